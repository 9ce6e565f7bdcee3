import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Synchronization

/// The outermost middleware: gives every request an id, taken from `X-Request-Id` when
/// the client (or a load balancer) sent a sensible one, else made here; puts it on every
/// log line of the request and echoes it on the response, so a client's report and our
/// logs meet on one string. Also writes the access log line: method, route template,
/// status and duration; never the query string, headers or body. And, being the one place
/// every response passes, marks it `Cache-Control: no-store` unless its route chose a
/// caching policy: tokens and tenant data must stay out of shared and browser caches.
struct RequestIDMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let id = request.headers[.xRequestID].flatMap(Self.acceptable) ?? CorrelationID.make()
        var context = context
        context.logger[metadataKey: "request_id"] = .string(id)
        let start = ContinuousClock.now
        var response = try await next(request, context)
        response.headers[.xRequestID] = id
        if response.headers[.cacheControl] == nil { response.headers[.cacheControl] = "no-store" }
        if context.logger.logLevel <= .info {
            let elapsed = ContinuousClock.now - start
            context.logger.info(
                "request",
                metadata: [
                    "method": .string(request.method.rawValue),
                    "route": .string(context.endpointPath ?? "unmatched"),
                    "status": .stringConvertible(response.status.code),
                    "duration_ms": .string(String(format: "%.2f", Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000)),
                ])
        }
        return response
    }

    /// Up to 128 characters of `A-Z a-z 0-9 - _ . : /`: enough for UUIDs and trace ids, too
    /// little to smuggle anything into a log line.
    static func acceptable(_ value: String) -> String? {
        guard (1...128).contains(value.utf8.count),
            value.utf8.allSatisfy({ byte in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || "-_.:/".utf8.contains(byte)
            })
        else { return nil }
        return value
    }
}

/// Request ids made here, when the client sent none.
enum CorrelationID {
    /// 32 lowercase hex digits: 64 random bits drawn once per process, then a counter put
    /// through a permutation of 64-bit numbers keyed by the process (so a process never
    /// repeats an id, and ids cannot be related to one another, to count the requests
    /// between two of them, without its keys). Unique across processes and restarts, as a
    /// random id would be, without asking the kernel for randomness on every request.
    static func make() -> String {
        let sequence = permute(counter.wrappingAdd(1, ordering: .relaxed).newValue, keys: processKeys)
        return String(unsafeUninitializedCapacity: 32) { bytes in
            for index in 0..<32 {
                let word = index < 16 ? processPrefix : sequence
                let digit = UInt8((word >> UInt64(4 * (15 - index % 16))) & 0xF)
                bytes[index] = digit < 10 ? UInt8(ascii: "0") + digit : UInt8(ascii: "a") + digit - 10
            }
            return 32
        }
    }

    /// A bijection of `UInt64` chosen by `keys`: two rounds of a public mixer (the
    /// finaliser of SplitMix64, whose xor-shifts and multiplications by odd constants are
    /// each invertible), a secret key xored in before each. With one key, or one round,
    /// anyone could undo the mixer and see consecutive counters. Not cryptography: ids
    /// only correlate, they grant nothing.
    static func permute(_ value: UInt64, keys: (UInt64, UInt64)) -> UInt64 {
        mix(mix(value ^ keys.0) ^ keys.1)
    }

    static func mix(_ value: UInt64) -> UInt64 {
        var value = value
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }

    private static let processPrefix = UInt64.random(in: .min ... .max)
    private static let processKeys = (UInt64.random(in: .min ... .max), UInt64.random(in: .min ... .max))
    private static let counter = Atomic<UInt64>(0)
}

extension HTTPField.Name {
    static let xRequestID = HTTPField.Name("X-Request-Id")!
}
