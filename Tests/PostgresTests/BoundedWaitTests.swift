import Foundation
import NIOPosix
@testable import Postgres
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 17: every wait on the database has a limit. A server that stops answering without
/// closing (a network partition, a backend stopped with SIGSTOP, a listener that accepts and
/// says nothing) must not hold a caller past its deadline. Each case runs against a real
/// server behind a real TCP proxy that stops forwarding; without the limit, each hangs
/// (the time limit ends it as a failure).
@Suite(.timeLimit(.minutes(1))) struct BoundedWaitTests {
    /// A pool of one connection through `proxy` to the test database.
    func pool(through proxy: FreezingProxy, _ adjust: (inout PostgresConnection.Configuration) -> Void = { _ in }) throws -> PostgresClient {
        let (_, name) = try NetworkFaults.testDatabaseSocket()
        var connection = PostgresConnection.Configuration(
            url: "postgresql://postgres@127.0.0.1:\(proxy.port)/\(name)?connect_timeout=5", applicationName: "bounded-wait-test")
        adjust(&connection)
        var configuration = PostgresClient.Configuration(connection: connection)
        configuration.maximumConnections = 1
        return PostgresClient(configuration: configuration, logger: TestDatabase.logger)
    }

    func proxy() throws -> FreezingProxy {
        try FreezingProxy(unixSocket: NetworkFaults.testDatabaseSocket().path)
    }

    /// Runs `body`, expecting it to fail with `code`; returns how long it took.
    func failure(_ code: PostgresError.Code, _ body: () async throws -> Void) async -> Duration {
        let started = ContinuousClock.now
        do {
            try await body()
            Issue.record("expected \(code), but it succeeded")
        } catch let error as PostgresError {
            #expect(error.code == code, "\(String(reflecting: error))")
            #expect(error.isUnavailable, "a silent server is 'try again later' for the layers above")
        } catch {
            Issue.record("expected \(code), got \(error)")
        }
        return started.duration(to: .now)
    }

    @Test func aStatementThroughAPartitionFailsAtTheCallersDeadline() async throws {
        let proxy = try proxy()
        defer { proxy.stop() }
        let client = try pool(through: proxy)
        try await client.withConnection { try await $0.query("SELECT 1") }
        proxy.freeze()
        let took = await failure(.timedOut) {
            try await client.withConnection(deadline: .now + .seconds(1)) { _ = try await $0.query("SELECT 1") }
        }
        #expect(took >= .milliseconds(900) && took < .milliseconds(2500), "gave up after \(took)")
        // The connection is abandoned, not handed out again.
        #expect(client.statistics.idle == 0 && client.statistics.leased == 0)
        await client.shutDown()
    }

    @Test func withoutADeadlineTheResponseTimeoutBoundsTheWait() async throws {
        let proxy = try proxy()
        defer { proxy.stop() }
        let client = try pool(through: proxy) { $0.responseTimeout = .seconds(1) }
        try await client.withConnection { try await $0.query("SELECT 1") }
        proxy.freeze()
        let took = await failure(.timedOut) {
            try await client.withConnection { _ = try await $0.query("SELECT 1") }
        }
        #expect(took < .milliseconds(2500), "gave up after \(took)")
        await client.shutDown()
    }

    @Test func aCommitTheServerNeverAnswersIsBounded() async throws {
        let proxy = try proxy()
        defer { proxy.stop() }
        let client = try pool(through: proxy) { $0.transactionControlTimeout = .seconds(1) }
        try await client.withConnection { _ = try await $0.query("SELECT 1") }  // connected before the clock starts
        let started = ContinuousClock.now
        let error = await #expect(throws: PostgresError.self) {
            try await client.withTransaction { connection in
                try await connection.query("SELECT 1")
                // The partition comes between the work and its COMMIT.
                proxy.freeze()
            }
        }
        #expect(error?.code == .timedOut)
        let took = started.duration(to: .now)
        #expect(took < .milliseconds(2500), "COMMIT waited \(took)")
        await client.shutDown()
    }

    @Test func aStoppedBackendIsGivenUpAtTheDeadline() async throws {
        var configuration = PostgresClient.Configuration(
            connection: .init(url: try TestDatabase.url(), applicationName: "bounded-wait-test"))
        configuration.maximumConnections = 1
        let client = PostgresClient(configuration: configuration, logger: TestDatabase.logger)
        let took = await failure(.timedOut) {
            try await client.withConnection(deadline: .now + .seconds(1)) { connection in
                // SIGSTOP: the server's socket stays open and its kernel acknowledges what
                // is sent; nobody reads it. Its own statement_timeout cannot fire either.
                #expect(kill(connection.backendPID, SIGSTOP) == 0)
                defer { kill(connection.backendPID, SIGCONT) }
                try await connection.query("SELECT 1")
            }
        }
        #expect(took < .milliseconds(2500), "gave up after \(took)")
        await client.shutDown()
    }

    @Test func aCancelThatCannotReachTheServerDoesNotHoldTheConnection() async throws {
        let proxy = try proxy()
        defer { proxy.stop() }
        let client = try pool(through: proxy) { $0.cancelTimeout = .seconds(1) }
        try await client.withConnection { connection in
            let statement = Task { try await connection.query("SELECT pg_sleep(0.5)") }
            try await Task.sleep(for: .milliseconds(100))
            // `PQcancel` connects to the same address, and now meets a listener that
            // accepts and never answers: it blocks, with no limit of its own.
            proxy.stallNewConnections()
            statement.cancel()
            // The cancel never arrived: the statement ran to its end.
            _ = try? await statement.value
            let started = ContinuousClock.now
            // The next statement waits for the cancel request (it must not be the one it
            // stops), but not forever: past the cancel timeout the connection is abandoned.
            await #expect(throws: PostgresError.self) { try await connection.query("SELECT 1") }
            let took = started.duration(to: .now)
            #expect(took < .milliseconds(2500), "the next statement waited \(took) for a cancel request")
            #expect(!connection.isReusable)
        }
        await client.shutDown()
    }

    @Test func aSessionScriptThroughAPartitionIsBounded() async throws {
        let proxy = try proxy()
        defer { proxy.stop() }
        let client = try pool(through: proxy)
        try await client.withConnection { try await $0.query("SELECT 1") }
        proxy.freeze()
        let took = await failure(.timedOut) {
            try await client.withConnection(deadline: .now + .seconds(1)) { try await $0.simpleQuery("SET jit = off") }
        }
        #expect(took < .milliseconds(2500), "gave up after \(took)")
        await client.shutDown()
    }
}

extension BoundedWaitTests {
    /// A deadline that passed before a statement was sent says nothing about the server:
    /// nothing is sent, the connection stays in the pool, and the others are kept. (Taking
    /// it for a lost server dropped every connection, and the next request had to wait for
    /// a new one past its deadline.)
    @Test func aDeadlinePassedBeforeSendingKeepsTheConnections() async throws {
        var configuration = PostgresClient.Configuration(
            connection: .init(url: try TestDatabase.url(), applicationName: "bounded-wait-test"))
        configuration.maximumConnections = 2
        let client = PostgresClient(configuration: configuration, logger: TestDatabase.logger)
        try await client.withConnection { first in
            try await client.withConnection { second in _ = try await second.query("SELECT 1") }
            _ = try await first.query("SELECT 1")
        }
        #expect(client.statistics.idle == 2)
        let error = await #expect(throws: PostgresError.self) {
            try await client.withConnection(deadline: .now + .milliseconds(50)) { connection in
                try await Task.sleep(for: .milliseconds(100))
                _ = try await connection.query("SELECT 1")
            }
        }
        #expect(error?.code == .timedOut)
        #expect(client.statistics.idle == 2, "\(client.statistics)")
        await client.shutDown()
    }
}

/// An idle connection to a server that vanished (a LISTEN connection across a partition)
/// is ended by the kernel, not by a statement's deadline: TCP keepalives and the user
/// timeout. Their effect takes the kernel's timers, tens of seconds, and a peer that drops
/// packets, which a test cannot make without the firewall; so this checks that every TCP
/// connection carries them, as a partition would need.
@Suite struct SilentPeerSocketTests {
    @Test func everyTCPConnectionCarriesKeepalivesAndAUserTimeout() async throws {
        let proxy = try FreezingProxy(unixSocket: NetworkFaults.testDatabaseSocket().path)
        defer { proxy.stop() }
        let (_, name) = try NetworkFaults.testDatabaseSocket()
        let threads = NIOThreadPool(numberOfThreads: 1)
        threads.start()
        let connection = try await PostgresConnection.connect(
            configuration: .init(url: "postgresql://postgres@127.0.0.1:\(proxy.port)/\(name)", applicationName: "keepalive-test"),
            threadPool: threads, ownsThreadPool: true, logger: TestDatabase.logger)
        func option(_ level: Int32, _ name: Int32) -> Int32 {
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            #expect(getsockopt(connection.socket, level, name, &value, &length) == 0)
            return value
        }
        #expect(option(SOL_SOCKET, SO_KEEPALIVE) == 1)
        #expect(option(Int32(IPPROTO_TCP), TCP_KEEPIDLE) == 10)
        #expect(option(Int32(IPPROTO_TCP), TCP_KEEPINTVL) == 5)
        #expect(option(Int32(IPPROTO_TCP), TCP_KEEPCNT) == 3)
        #expect(option(Int32(IPPROTO_TCP), TCP_USER_TIMEOUT) == 15_000)
        await connection.close()
    }
}

extension BoundedWaitTests {
    /// A healthy server that merely keeps a statement past the caller's deadline (blocked on
    /// a lock here, with no `statement_timeout` of its own) is not a lost server: the
    /// statement is cancelled on the server, its connection is given up, and the pool's
    /// other connections stay. (Taken for a lost server, every such request dropped the
    /// whole pool, and left its statement running for nobody.)
    @Test func aStatementPastTheCallersDeadlineIsCancelledAndTheOthersKept() async throws {
        let name = "bounded-lock-\(UInt32.random(in: 0...UInt32.max))"
        var configuration = PostgresClient.Configuration(connection: .init(url: try TestDatabase.url(), applicationName: name))
        configuration.maximumConnections = 2
        let client = PostgresClient(configuration: configuration, logger: TestDatabase.logger)
        let table = "bounded_lock_\(UInt32.random(in: 0...UInt32.max))"
        let holder = try await TestDatabase.connect(url: try TestDatabase.url())
        try await holder.simpleQuery("CREATE TABLE \(table) (id int)")
        try await holder.simpleQuery("BEGIN; LOCK TABLE \(table) IN ACCESS EXCLUSIVE MODE")
        try await client.withConnection { first in
            try await client.withConnection { second in _ = try await second.query("SELECT 1") }
            _ = try await first.query("SELECT 1")
        }
        let error = await #expect(throws: PostgresError.self) {
            try await client.withConnection(deadline: .now + .milliseconds(500)) { connection in
                _ = try await connection.query(PostgresQuery(unsafeSQL: "SELECT count(*) FROM \(table)"))
            }
        }
        #expect(error?.code == .timedOut)
        #expect(client.statistics.idle == 1, "the other connection stays: \(client.statistics)")
        // The blocked statement does not wait on for nobody.
        var waiting = 1
        for _ in 0..<50 where waiting > 0 {
            try await Task.sleep(for: .milliseconds(100))
            waiting = try await TestDatabase.superuser().withConnection { connection in
                try await connection.query(
                    "SELECT count(*)::int FROM pg_stat_activity WHERE application_name = \(name) AND wait_event_type = 'Lock'"
                ).one().decode(Int.self)
            }
        }
        #expect(waiting == 0)
        try await holder.simpleQuery("ROLLBACK; DROP TABLE \(table)")
        await holder.close()
        await client.shutDown()
    }
}
