import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import Postgres
import TestSupport
import Testing

/// Two `surveyd serve` and two `surveyd worker` processes on one database, as behind a load
/// balancer: the sending invariants (one open survey per number, idempotency, never an SMS
/// twice), the rate limit and token revocation hold across them, because their state is in
/// PostgreSQL.
@Suite struct ReplicasTests {
    static var executable: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("surveyd").path
    }

    struct Replica {
        let process: Process
        let base: String
    }

    func environment(_ pipeline: Pipeline, extra: [String: String]) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment.merge(
            [
                "DATABASE_URL": pipeline.url, "DESTINATION_HASH_KEY": Pipeline.hashKey, "LOG_LEVEL": "critical",
                "SURVEYD_SQL_DIR": TestDatabase.sqlDirectory, "TWILIO_AUTH_TOKEN": FakeTwilio.authToken,
                "TWILIO_ACCOUNT_SID": FakeTwilio.accountSID, "SURVEYD_OPENAPI": TestDatabase.sqlDirectory + "/../openapi.yaml",
            ].merging(extra) { _, new in new }, uniquingKeysWith: { _, new in new })
        return environment
    }

    func start(_ arguments: [String], environment: [String: String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = arguments
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    func stop(_ processes: [Process]) async {
        for process in processes where process.isRunning { kill(process.processIdentifier, SIGTERM) }
        for process in processes {
            while process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        }
    }

    func call(
        _ client: HTTPClient, _ method: HTTPMethod, _ url: String, token: String, body: String? = nil,
        headers: [(String, String)] = []
    ) async throws -> (status: Int, body: String) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Content-Type", value: "application/json")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await client.execute(request, timeout: .seconds(30))
        let text = String(buffer: try await response.body.collect(upTo: 1 << 22))
        return (Int(response.status.code), text)
    }

    @Test func twoServesAndTwoWorkersKeepTheInvariants() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.executable), "build surveyd first")
        let pipeline = try await Pipeline.make("replicas")
        pipeline.gateway.setLatency(.milliseconds(2))
        let (company, headers) = try await pipeline.company()
        let token = String(headers[.authorization]!.dropFirst("Bearer ".count))
        let adminToken = "replicas-admin-\(UInt32.random(in: 0...UInt32.max))"
        // A small rate limit, so that crossing it is quick; 2 per second, bursts of 40.
        let ports = [try FreePort.reserve(), try FreePort.reserve()]
        var processes: [Process] = []
        for port in ports {
            processes.append(
                try start(
                    ["serve"],
                    environment: environment(
                        pipeline,
                        extra: [
                            "PORT": "\(port)", "HOST": "127.0.0.1", "ADMIN_TOKEN": adminToken,
                            "RATE_LIMIT_PER_SECOND": "2", "RATE_LIMIT_BURST": "40",
                        ])))
        }
        let bases = ports.map { "http://127.0.0.1:\($0)" }
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            for base in bases {
                var ready = false
                for _ in 0..<200 where !ready {
                    ready = (try? await call(client, .GET, base + "/ready", token: "")).map { $0.status == 200 } ?? false
                    if !ready { try await Task.sleep(for: .milliseconds(50)) }
                }
                try #require(ready, "\(base) never became ready")
            }
            let api = bases.map { $0 + "/survey/1.0.0" }
            let created = try await call(
                client, .POST, api[0] + "/surveys", token: token,
                body: #"{"name":"r","interactionType":"care","questions":[{"body":"Q?","language":"en"}]}"#)
            #expect(created.status == 201)
            let survey = try #require(
                (try JSONSerialization.jsonObject(with: Data(created.body.utf8)) as? [String: Any])?["id"] as? Int)

            // The same 30 numbers sent through both replicas at once, twice each: one open
            // survey per number, so each is queued exactly once across all four calls.
            let numbers = (0..<30).map { _ in phone() }
            let body = #"{"requests":[\#(numbers.map { #"{"channel":"SMS","destination":"\#($0)"}"# }.joined(separator: ","))]}"#
            let sends = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for index in 0..<4 {
                    group.addTask { try await call(client, .POST, api[index % 2] + "/surveys/\(survey)/send", token: token, body: body) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(sends.allSatisfy { $0.0 == 202 }, "\(sends.map(\.0))")
            let queued = sends.map { $0.1.components(separatedBy: #""status":"queued""#).count - 1 }.reduce(0, +)
            #expect(queued == numbers.count, "queued \(queued) across replicas")

            // One Idempotency-Key on both replicas: one call's effect, replayed by the other.
            let more = (0..<5).map { _ in phone() }
            let moreBody = #"{"requests":[\#(more.map { #"{"channel":"SMS","destination":"\#($0)"}"# }.joined(separator: ","))]}"#
            let first = try await call(
                client, .POST, api[0] + "/surveys/\(survey)/send", token: token, body: moreBody, headers: [("Idempotency-Key", "replicas-1")])
            let second = try await call(
                client, .POST, api[1] + "/surveys/\(survey)/send", token: token, body: moreBody, headers: [("Idempotency-Key", "replicas-1")])
            #expect(first.status == 202 && second.status == 202)
            #expect(first.body == second.body, "the replay differs from the first response")

            // Two workers drain the queue together: every number gets one SMS.
            let workerEnvironment = environment(
                pipeline,
                extra: [
                    "SMS_PROVIDER": "twilio", "TWILIO_API_BASE_URL": pipeline.gateway.baseURL,
                    "TWILIO_ACCOUNT_SID": FakeTwilio.accountSID, "SMS_SENDER": Pipeline.sender, "SMS_RATE_LIMIT": "500",
                    "SMS_BATCH_SIZE": "5",
                ])
            let workers = [try start(["worker"], environment: workerEnvironment), try start(["worker"], environment: workerEnvironment)]
            processes += workers
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline, try await pipeline.jobsLeft() > 0 {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(try await pipeline.jobsLeft() == 0)
            let received = Dictionary(grouping: pipeline.gateway.received, by: \.to).mapValues(\.count)
            #expect(received.count == numbers.count + more.count, "\(received.count) numbers reached the gateway")
            #expect(received.values.allSatisfy { $0 == 1 }, "a number got more than one SMS")

            // The rate limit is one bucket for both replicas: alternate between them until
            // refused. The burst is 40 and about 2 a second come back; so far 7 requests.
            var allowed = 0
            var refusedAt: Int?
            let firstRequest = ContinuousClock.now
            for index in 0..<200 where refusedAt == nil {
                let status = try await call(client, .GET, api[index % 2] + "/surveys?limit=1", token: token).status
                if status == 200 { allowed += 1 } else if status == 429 { refusedAt = index }
            }
            let elapsed = ContinuousClock.now - firstRequest
            // 40 to start with (less the 7 requests so far), plus 2 a second since: replicas
            // with a bucket each would allow about twice as many.
            let refill = Int(Double(elapsed.components.seconds) * 2) + 2
            #expect(refusedAt != nil, "never limited across replicas")
            #expect((25...(40 + refill)).contains(allowed), "\(allowed) allowed in \(elapsed) before the shared bucket ran dry")

            // A token revoked through one replica stops working at once on the other.
            let issued = try await call(client, .POST, bases[0] + "/admin/companies/\(company)/tokens", token: adminToken, body: "{}")
            #expect(issued.status == 201, "\(issued.body)")
            let issuedObject = try #require(try JSONSerialization.jsonObject(with: Data(issued.body.utf8)) as? [String: Any])
            let newToken = try #require(issuedObject["token"] as? String)
            let newID = try #require(issuedObject["id"] as? Int)
            #expect(try await call(client, .GET, api[1] + "/usage", token: newToken).status == 200)  // now cached there
            let revoked = try await call(client, .DELETE, bases[0] + "/admin/companies/\(company)/tokens/\(newID)", token: adminToken)
            #expect(revoked.status == 204)
            var refusedAfter: Duration?
            let start = ContinuousClock.now
            while refusedAfter == nil, ContinuousClock.now - start < .seconds(2) {
                if try await call(client, .GET, api[1] + "/usage", token: newToken).status == 401 {
                    refusedAfter = ContinuousClock.now - start
                }
            }
            let after = try #require(refusedAfter, "the revoked token still worked on the other replica after 2 s")
            #expect(after < .milliseconds(500), "revocation reached the other replica after \(after)")
        } catch {
            Issue.record(error)
        }
        try await client.shutdown()
        await stop(processes)
        await pipeline.close()
    }
}

/// A free TCP port on 127.0.0.1, found by binding to port 0.
enum FreePort {
    static func reserve() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
        }
        guard bound else { throw POSIXError(.EADDRINUSE) }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
