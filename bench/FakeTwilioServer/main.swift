import Foundation
import Hummingbird
import Logging
import Synchronization

/// A Twilio-compatible gateway for benchmarks: accepts every message at once and remembers
/// when each destination arrived, so a benchmark can measure enqueue-to-gateway latency.
///
///     fake-twilio PORT
///     POST /2010-04-01/Accounts/{sid}/Messages.json   → 201 {"sid", "status"}
///     GET  /received                                  → {"count": n, "arrivals": {"+32...": epochSeconds}}
///     DELETE /received                                → forget everything
let port = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 9099 : 9099

final class Arrivals: Sendable {
    private let state = Mutex<(count: Int, at: [String: Double])>((0, [:]))
    func record(_ to: String) -> Int {
        let now = Date().timeIntervalSince1970
        return state.withLock {
            $0.count += 1
            $0.at[to] = now
            return $0.count
        }
    }
    func snapshot() -> (Int, [String: Double]) { state.withLock { ($0.count, $0.at) } }
    func reset() { state.withLock { $0 = (0, [:]) } }
}

let arrivals = Arrivals()
let router = Router()
router.post("2010-04-01/Accounts/:account/Messages.json") { request, context -> Response in
    let body = try await request.body.collect(upTo: 1 << 16)
    var to = ""
    for pair in String(buffer: body).split(separator: "&") where pair.hasPrefix("To=") {
        to = String(pair.dropFirst(3)).replacingOccurrences(of: "%2B", with: "+")
    }
    let number = arrivals.record(to)
    return Response(
        status: .created, headers: [.contentType: "application/json"],
        body: .init(byteBuffer: ByteBuffer(string: #"{"sid":"SMbench\#(number)","status":"queued"}"#)))
}
router.get("received") { _, _ -> Response in
    let (count, at) = arrivals.snapshot()
    let data = try JSONSerialization.data(withJSONObject: ["count": count, "arrivals": at])
    return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}
router.delete("received") { _, _ -> HTTPResponse.Status in
    arrivals.reset()
    return .noContent
}
var logger = Logger(label: "fake-twilio")
logger.logLevel = .warning
let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: logger)
try await app.runService()
