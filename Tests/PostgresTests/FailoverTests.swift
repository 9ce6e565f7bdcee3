import Foundation
import Postgres
import TestSupport
import Testing

/// Issue 17: a real failover. scripts/test starts a primary and a streaming standby of it
/// ("failover", "failover-replica"); this test stops the primary at once (as a crash
/// would), promotes the standby, and checks that one pool, given both hosts, carries on:
/// meanwhile every call fails fast as unavailable (no hang, no other error), and then the
/// writes reach the new primary, with what was committed before the crash on it.
@Suite(.serialized) struct FailoverTests {
    struct NotConfigured: Error, CustomStringConvertible {
        var description: String {
            "TEST_FAILOVER_PRIMARY_URL and TEST_FAILOVER_STANDBY_URL are not set: run the tests with scripts/test"
        }
    }

    struct Server {
        var host: String
        var port: String
        var url: String
    }

    static func server(_ variable: String) throws -> Server {
        guard let url = ProcessInfo.processInfo.environment[variable], let components = URLComponents(string: url),
            let host = components.queryItems?.first(where: { $0.name == "host" })?.value,
            let port = components.queryItems?.first(where: { $0.name == "port" })?.value
        else { throw NotConfigured() }
        return Server(host: host, port: port, url: url)
    }

    /// `scripts/pg-ctl-private NAME ARGUMENTS…`: pg_ctl on one of the private clusters.
    static func pgCtl(_ arguments: [String]) throws {
        let root = URL(fileURLWithPath: TestDatabase.sqlDirectory).deletingLastPathComponent()
        let process = Process()
        process.executableURL = root.appendingPathComponent("scripts/pg-ctl-private")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw POSIXError(.EIO) }
    }

    static func client(_ conninfo: String, connections: Int = 4) -> PostgresClient {
        var configuration = PostgresClient.Configuration(connection: .init(url: conninfo, applicationName: "failover-test"))
        configuration.maximumConnections = connections
        configuration.initialBackoff = .milliseconds(50)
        configuration.maximumBackoff = .milliseconds(500)
        return PostgresClient(configuration: configuration, logger: TestDatabase.logger)
    }

    @Test(.timeLimit(.minutes(2))) func onePoolGivenBothHostsCarriesOnAfterThePrimaryDiesAndTheStandbyIsPromoted() async throws {
        let primary = try Self.server("TEST_FAILOVER_PRIMARY_URL")
        let standby = try Self.server("TEST_FAILOVER_STANDBY_URL")
        let pool = Self.client(
            "host=\(primary.host),\(standby.host) port=\(primary.port),\(standby.port) user=postgres dbname=postgres "
                + "target_session_attrs=read-write connect_timeout=2")
        let marker = Int.random(in: 1...Int(Int32.max))
        try await pool.withConnection { connection in
            _ = try await connection.query("CREATE TABLE IF NOT EXISTS failover_test (marker int NOT NULL)")
            _ = try await connection.query("INSERT INTO failover_test VALUES (\(marker))")
        }
        // Wait until the standby has replayed it (the replication here is asynchronous; in
        // production a synchronous standby has it before the COMMIT returns).
        let reader = Self.client(standby.url, connections: 1)
        var replayed = false
        for _ in 0..<100 where !replayed {
            let count: Int? = try? await reader.withConnection { connection in
                try await connection.query("SELECT count(*)::int FROM failover_test WHERE marker = \(marker)").one().decode(Int.self)
            }
            replayed = count == 1
            if !replayed { try await Task.sleep(for: .milliseconds(100)) }
        }
        await reader.shutDown()
        try #require(replayed, "the standby did not replay the marker")

        // The crash: the primary stops at once, its connections cut.
        try Self.pgCtl(["failover", "stop", "-m", "immediate", "-w"])
        func write() async throws -> String {
            try await pool.withConnection(deadline: .now + .seconds(3)) { connection in
                _ = try await connection.query("INSERT INTO failover_test VALUES (\(marker + 1))")
                return try await connection.query("SHOW data_directory").one().decode(String.self)
            }
        }
        // Before the promotion there is no primary: each call fails at once as unavailable.
        var failures = 0
        let outage = ContinuousClock.now
        while outage.duration(to: .now) < .seconds(1) {
            let started = ContinuousClock.now
            do {
                _ = try await write()
                Issue.record("a write succeeded with no primary")
            } catch let error as PostgresError {
                #expect(error.isUnavailable, "\(String(reflecting: error))")
                failures += 1
            }
            #expect(started.duration(to: .now) < .seconds(4), "a call hung during the outage")
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(failures > 0)

        try Self.pgCtl(["failover-replica", "promote", "-w"])
        var dataDirectory: String?
        let promoted = ContinuousClock.now
        while dataDirectory == nil, promoted.duration(to: .now) < .seconds(30) {
            do {
                dataDirectory = try await write()
            } catch let error as PostgresError {
                #expect(error.isUnavailable, "\(String(reflecting: error))")
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        let directory = try #require(dataDirectory, "no write succeeded within 30 s of the promotion")
        #expect(directory.contains("failover-replica"), "the write went to \(directory)")
        // What was committed before the crash is on the new primary, once.
        let markers = try await pool.withConnection { connection in
            try await connection.query("SELECT count(*)::int FROM failover_test WHERE marker = \(marker)").one().decode(Int.self)
        }
        #expect(markers == 1)
        // A dedicated connection (as LISTEN uses) made now reaches the new primary too.
        let dedicated = try await pool.makeDedicatedConnection()
        let inRecovery = try await dedicated.query("SELECT pg_is_in_recovery()").one().decode(Bool.self)
        await dedicated.close()
        #expect(!inRecovery)
        await pool.shutDown()
    }
}
