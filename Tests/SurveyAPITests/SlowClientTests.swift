import APITestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import SurveyAPI
import SurveyStorage
import TestSupport
import Testing

/// Issue 12: a body sent a byte every few seconds kept its connection for ever, before any
/// authentication; twenty thousand of them took every file descriptor of `serve`.
@Suite struct SlowClientTests {
    let harness: Harness
    init() async throws { harness = try await Harness() }

    func application(_ limits: (inout APIConfiguration.Limits) -> Void) throws -> some ApplicationProtocol {
        var configuration = Harness.configuration()
        limits(&configuration.limits)
        configuration.webhooks = .init(
            authToken: "token", accountSID: "AC" + String(repeating: "0", count: 32), publicBaseURL: "http://surveyd.test")
        let database = Database(client: Database.applicationPool(
            url: try TestDatabase.url(), applicationName: "slow-client-test", maximumConnections: 4, logger: TestDatabase.logger))
        return buildApplication(configuration: configuration, database: database, logger: TestDatabase.logger)
    }

    /// A normal request over a connection of its own: its status line and how long it took.
    func normalRequest(port: Int) async throws -> (String, Duration) {
        let start = ContinuousClock.now
        let connection = try await RawConnection.open(port: port)
        try await connection.write("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let (text, _) = try await connection.readUntilClosed(timeout: .seconds(10))
        return (String(text.prefix(15)), start.duration(to: .now))
    }

    @Test func slowRequestsAreCutOffAndOthersServed() async throws {
        let receiveTimeout = Duration.seconds(1)
        let application = try application {
            $0.receiveTimeout = receiveTimeout
            $0.maximumConnectionsPerAddress = 1000
        }
        try await application.test(.live) { client in
            let port = try #require(client.port)
            var baseline: [Duration] = []
            for _ in 0..<10 {
                let (status, took) = try await normalRequest(port: port)
                #expect(status == "HTTP/1.1 200 OK")
                baseline.append(took)
            }

            // 300 attackers: 270 trickle a body a byte at a time, 30 trickle the head.
            let attackers = try await (0..<300).asyncMap { _ in try await RawConnection.open(port: port) }
            let opened = ContinuousClock.now
            for (index, attacker) in attackers.enumerated() where index < 270 {
                try await attacker.write(
                    "POST /webhooks/twilio/sms HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n")
            }
            let outcomes = Task {
                try await withThrowingTaskGroup(of: (String, Bool, Duration).self) { group in
                    for attacker in attackers {
                        group.addTask {
                            let (text, closed) = try await attacker.readUntilClosed(timeout: receiveTimeout * 5)
                            return (String(text.prefix(12)), closed, opened.duration(to: .now))
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            let trickle = Task {
                for tick in 0..<12 {
                    for (index, attacker) in attackers.enumerated() {
                        try? await attacker.write(index < 270 ? "a" : String("POST /x HTTP/1.1\r\n".dropFirst(tick).prefix(1)))
                    }
                    try? await Task.sleep(for: .milliseconds(250))
                }
            }
            // Meanwhile a normal client is served as usual.
            var during: [Duration] = []
            for _ in 0..<10 {
                let (status, took) = try await normalRequest(port: port)
                #expect(status == "HTTP/1.1 200 OK")
                during.append(took)
            }
            let results = try await outcomes.value
            trickle.cancel()

            #expect(results.count == 300)
            #expect(results.allSatisfy { $0.1 }, "every slow connection is closed")
            #expect(results.allSatisfy { $0.0 == "HTTP/1.1 408" }, "\(Set(results.map(\.0)))")
            let latest = results.map(\.2).max() ?? .zero
            // The bound, and room for a loaded machine to act on it (300 connections on two
            // busy cores once took 7.5 s).
            #expect(latest < receiveTimeout + .seconds(8), "the last slow connection was closed after \(latest)")
            let median = { (durations: [Duration]) in durations.sorted()[durations.count / 2] }
            #expect(median(during) < median(baseline) + .milliseconds(250), "baseline \(median(baseline)), during \(median(during))")
            for attacker in attackers { await attacker.close() }
        }
    }

    @Test func connectionsBeyondTheCapsAreRefusedClearly() async throws {
        let application = try application {
            $0.maximumConnections = 6
            $0.maximumConnectionsPerAddress = 4
        }
        try await application.test(.live) { client in
            let port = try #require(client.port)
            // The test client may hold a connection of its own: fill the address's share.
            var held: [RawConnection] = []
            for _ in 0..<4 { held.append(try await RawConnection.open(port: port)) }
            try await Task.sleep(for: .milliseconds(100))
            let refused = try await RawConnection.open(port: port)
            let (text, closed) = try await refused.readUntilClosed(timeout: .seconds(5))
            #expect(closed)
            #expect(text.hasPrefix("HTTP/1.1 503 Service Unavailable"), "\(text)")
            #expect(text.contains("Retry-After: 1"))
            #expect(text.contains("Too many connections are open from this address"))
            // One closed, one admitted.
            await held.removeFirst().close()
            try await Task.sleep(for: .milliseconds(100))
            let (status, _) = try await normalRequest(port: port)
            #expect(status == "HTTP/1.1 200 OK")
            for connection in held { await connection.close() }
        }
    }
}

extension Sequence where Element: Sendable {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
