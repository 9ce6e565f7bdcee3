import Foundation
import NIOPosix
import Postgres
import Synchronization
import TestSupport
import Testing

@Suite struct PostgresClientTests {
    func pool(
        max: Int, waitTimeout: Duration = .seconds(5), name: String = "pool-test-\(UInt32.random(in: 0...UInt32.max))",
        url: String? = nil
    ) throws -> PostgresClient {
        var configuration = PostgresClient.Configuration(connection: .init(url: try url ?? TestDatabase.url(), applicationName: name))
        configuration.maximumConnections = max
        configuration.waitTimeout = waitTimeout
        return PostgresClient(configuration: configuration, logger: TestDatabase.logger)
    }

    func backends(named name: String) async throws -> Int {
        try await TestDatabase.superuser().withConnection { connection in
            try await connection.query("SELECT count(*)::int FROM pg_stat_activity WHERE application_name = \(name)")
                .one().decode(Int.self, column: "count")
        }
    }

    @Test func parametersAndTypesRoundTrip() async throws {
        let client = try pool(max: 1)
        let row = try await client.withConnection { connection in
            try await connection.query(
                """
                SELECT \(42)::bigint, \("it's \"quoted\" ; DROP TABLE x; --")::text, \(true)::bool, \(Optional<Int>.none)::int,
                       \(["a", "b,c", "", "NULL", "q\"uote", "back\\slash", "{brace}"])::text[], \(1.5)::float8,
                       \(Date(timeIntervalSince1970: 1_700_000_000.123456))::timestamptz, \(Data([0, 1, 254, 255]))::bytea,
                       '2020-02-29 23:59:59.5-01:30'::timestamptz
                """
            ).one()
        }
        let (int, text, bool, null, array, double, date, bytes, offsetDate) = try row.decode(
            (Int64, String, Bool, Int?, [String], Double, Date, Data, Date).self)
        #expect(int == 42)
        #expect(text == "it's \"quoted\" ; DROP TABLE x; --")
        #expect(bool)
        #expect(null == nil)
        #expect(array == ["a", "b,c", "", "NULL", "q\"uote", "back\\slash", "{brace}"])
        #expect(double == 1.5)
        #expect(abs(date.timeIntervalSince1970 - 1_700_000_000.123456) < 0.000_001)
        #expect(bytes == Data([0, 1, 254, 255]))
        // 2020-03-01 01:29:59.5 UTC
        #expect(offsetDate.timeIntervalSince1970 == 1_583_026_199.5)
    }

    @Test func serverErrorsCarrySQLStateAndLeakNothingInDescription() async throws {
        let client = try pool(max: 1)
        let error = await #expect(throws: PostgresError.self) {
            try await client.withConnection { connection in
                try await connection.query("SELECT 1 / \(0)")
            }
        }
        #expect(error?.code == .server)
        #expect(error?.sqlState == "22012")
        #expect(error?.description == "PostgresError(code: server, sqlState: 22012)")
        #expect(error?.debugDescription.contains("division by zero") == true)
        #expect(error?.debugDescription.contains("SELECT 1 /") == true)
    }

    @Test func transactionsCommitOrRollBack() async throws {
        let client = try pool(max: 1)
        let table = "tx_\(UInt32.random(in: 0...UInt32.max))"
        try await client.withConnection { try await $0.simpleQuery("CREATE TABLE \(table) (v int)") }
        try await client.withTransaction { try await $0.query("INSERT INTO \(identifier: table) VALUES (\(1))") }
        struct Boom: Error {}
        await #expect(throws: Boom.self) {
            try await client.withTransaction { connection in
                try await connection.query("INSERT INTO \(identifier: table) VALUES (\(2))")
                throw Boom()
            }
        }
        let values = try await client.withConnection { try await $0.query("SELECT v FROM \(identifier: table)") }
            .map { try $0.decode(Int.self, column: "v") }
        #expect(values == [1])
        try await client.withConnection { try await $0.simpleQuery("DROP TABLE \(table)") }
    }

    @Test func moreConcurrentUsersThanConnectionsAllSucceedWithinTheMaximum() async throws {
        let name = "pool-concurrency-\(UInt32.random(in: 0...UInt32.max))"
        let client = try pool(max: 3, name: name)
        let usage = ConcurrencyGauge()
        try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<40 {
                group.addTask {
                    try await client.withConnection { connection in
                        usage.enter()
                        defer { usage.leave() }
                        return try await connection.query("SELECT \(index)::int FROM pg_sleep(0.01)")
                            .one().decode(Int.self)
                    }
                }
            }
            var results = Set<Int>()
            for try await value in group { results.insert(value) }
            #expect(results == Set(0..<40))
        }
        #expect(usage.peak <= 3)
        #expect(try await backends(named: name) <= 3)
    }

    /// Opens the pool's connection, retrying waits that time out while it connects.
    static func warmUp(_ client: PostgresClient) async throws {
        for attempt in 1...50 {
            do {
                try await client.withConnection { try await $0.query("SELECT 1") }
                return
            } catch let error as PostgresError where error.code == .poolTimeout && attempt < 50 {
                continue
            }
        }
    }

    @Test func waitTimeoutFailsFast() async throws {
        let client = try pool(max: 1, waitTimeout: .milliseconds(200))
        // Open the connection first: under a busy test run, connecting alone can take
        // longer than the 200 ms this test allows a waiter.
        try await Self.warmUp(client)
        try await client.withConnection { _ in
            let start = ContinuousClock.now
            let error = await #expect(throws: PostgresError.self) {
                try await client.withConnection { _ in }
            }
            #expect(error?.code == .poolTimeout)
            #expect(ContinuousClock.now - start < .seconds(2))
        }
        // The pool still works afterwards.
        try await client.withConnection { try await $0.query("SELECT 1") }
    }

    /// A caller's own deadline (a request's) ends its wait for a connection when it comes
    /// before the pool's wait timeout.
    @Test func aCallersDeadlineEndsItsWaitForAConnection() async throws {
        let client = try pool(max: 1, waitTimeout: .seconds(10))
        try await Self.warmUp(client)
        try await client.withConnection { _ in
            let started = ContinuousClock.now
            let error = await #expect(throws: PostgresError.self) {
                try await client.withTransaction(deadline: .now + .milliseconds(300)) { _ in }
            }
            #expect(error?.code == .poolTimeout)
            let waited = ContinuousClock.now - started
            #expect(waited >= .milliseconds(300) && waited < .seconds(3), "waited \(waited)")
        }
        try await client.withConnection { try await $0.query("SELECT 1") }
    }

    @Test func cancellingAWaiterFreesItsPlace() async throws {
        let client = try pool(max: 1, waitTimeout: .seconds(30))
        try await client.withConnection { _ in
            let waiter = Task { try await client.withConnection { _ in } }
            try await Task.sleep(for: .milliseconds(100))
            #expect(client.statistics.waiting == 1)
            waiter.cancel()
            await #expect(throws: CancellationError.self) { try await waiter.value }
            #expect(client.statistics.waiting == 0)
        }
        try await client.withConnection { try await $0.query("SELECT 1") }
    }

    @Test func cancellingARunningQueryStopsItOnTheServer() async throws {
        let client = try pool(max: 1)
        // The connection is open before the clock starts, so 300 ms later the statement
        // is running, not still connecting.
        try await Self.warmUp(client)
        let start = ContinuousClock.now
        let running = Task {
            try await client.withConnection { try await $0.query("SELECT pg_sleep(30)") }
        }
        try await Task.sleep(for: .milliseconds(300))
        running.cancel()
        let error = await #expect(throws: PostgresError.self) { try await running.value }
        #expect(error?.sqlState == PostgresError.SQLState.queryCanceled)
        #expect(ContinuousClock.now - start < .seconds(10))
        try await client.withConnection { try await $0.query("SELECT 1") }
    }

    @Test func aTerminatedBackendIsReplaced() async throws {
        let client = try pool(max: 1)
        let first = try await client.withConnection { $0.backendPID }
        try await TestDatabase.superuser().withConnection { connection in
            try await connection.query("SELECT pg_terminate_backend(\(first))")
        }
        try await Task.sleep(for: .milliseconds(100))
        let second = try await client.withConnection { connection in
            try await connection.query("SELECT pg_backend_pid()").one().decode(Int32.self)
        }
        #expect(second != first)
    }

    @Test func aBackendKilledWhileLeasedFailsThatCallAndIsReplaced() async throws {
        let client = try pool(max: 1)
        let error = await #expect(throws: PostgresError.self) {
            try await client.withConnection { connection in
                try await TestDatabase.superuser().withConnection { admin in
                    try await admin.query("SELECT pg_terminate_backend(\(connection.backendPID))")
                }
                try await Task.sleep(for: .milliseconds(100))
                try await connection.query("SELECT 1")
            }
        }
        #expect(error?.isUnavailable == true)
        let value = try await client.withConnection { try await $0.query("SELECT 41 + 1").one().decode(Int.self) }
        #expect(value == 42)
    }

    @Test func aTransactionWhoseConnectionIsLostBeforeCommitRunsAgainWhenAllowed() async throws {
        let client = try pool(max: 2)
        let attempts = Mutex(0)
        let table = "lost_\(UInt32.random(in: 0...UInt32.max))"
        try await client.withConnection { try await $0.simpleQuery("CREATE TABLE \(table) (n int)") }
        let body: (PostgresConnection) async throws -> Int = { connection in
            let attempt = attempts.withLock { $0 += 1; return $0 }
            try await connection.query("INSERT INTO \(identifier: table) VALUES (\(attempt))")
            if attempt == 1 {
                try await TestDatabase.superuser().withConnection { admin in
                    try await admin.query("SELECT pg_terminate_backend(\(connection.backendPID))")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            return try await connection.query("SELECT count(*)::int FROM \(identifier: table)").one().decode(Int.self)
        }
        let seen = try await client.withTransaction(retryingIfLost: true, body)
        #expect(seen == 1, "the first run's insert was rolled back with its backend")
        #expect(attempts.withLock { $0 } == 2)
        let rows = try await client.withConnection {
            try await $0.query("SELECT array_agg(n)::int[] FROM \(identifier: table)").one().decode([Int].self)
        }
        #expect(rows == [2])

        // Not asked to: the caller hears that the connection was lost.
        attempts.withLock { $0 = 0 }
        let error = await #expect(throws: PostgresError.self) { try await client.withTransaction(body) }
        #expect(error?.isConnectionLost == true)
        #expect(attempts.withLock { $0 } == 1)
        try await client.withConnection { try await $0.simpleQuery("DROP TABLE \(table)") }
    }

    @Test func aPipelineRunsItsStatementsInOneGoAndStopsAtTheFirstError() async throws {
        let client = try pool(max: 1)
        let table = "pipeline_\(UInt32.random(in: 0...UInt32.max))"
        try await client.withConnection { connection in
            try await connection.simpleQuery("CREATE TABLE \(table) (n int PRIMARY KEY)")
            let results = try await connection.pipeline([
                "INSERT INTO \(identifier: table) VALUES (\(1)), (\(2))",
                "SELECT n FROM \(identifier: table) ORDER BY n",
                "SELECT \("text")::text AS t, \(Optional<Int>.none)::int AS missing",
            ])
            #expect(results.count == 3)
            #expect(results[0].affectedRows == 2)
            let numbers = try results[1].map { try $0.decode(Int.self) }
            #expect(numbers == [1, 2])
            let (text, missing) = try results[2].one().decode((String, Int?).self)
            #expect(text == "text" && missing == nil)

            // An error: thrown, the statements after it not run, and the implicit
            // transaction (the insert before it) rolled back.
            let error = await #expect(throws: PostgresError.self) {
                try await connection.pipeline([
                    "INSERT INTO \(identifier: table) VALUES (\(3))",
                    "INSERT INTO \(identifier: table) VALUES (\(1))",
                    "INSERT INTO \(identifier: table) VALUES (\(4))",
                ])
            }
            #expect(error?.sqlState == "23505")
            let left = try await connection.query("SELECT array_agg(n ORDER BY n)::int[] FROM \(identifier: table)").one()
                .decode([Int].self)
            #expect(left == [1, 2])
            #expect(connection.isReusable, "the connection left pipeline mode cleanly")
            try await connection.simpleQuery("DROP TABLE \(table)")
        }
    }

    /// `BEGIN` with its prelude, `COMMIT` and `ROLLBACK` wait for the server without holding
    /// a thread, like any statement: two connections share one thread, and one's slow
    /// prelude does not hold up the other's blocking call (`simpleQuery` runs on the thread).
    @Test func transactionControlHoldsNoThread() async throws {
        let thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        let configuration = PostgresConnection.Configuration(url: try TestDatabase.url(), applicationName: "one-thread")
        let slow = try await PostgresConnection.connect(configuration: configuration, threadPool: thread, logger: TestDatabase.logger)
        let other = try await PostgresConnection.connect(configuration: configuration, threadPool: thread, logger: TestDatabase.logger)
        let transactionDone = Mutex(false)
        async let transaction: Void = slow.withTransaction(prelude: ["SELECT pg_sleep(1.5)"]) { _ in
            transactionDone.withLock { $0 = true }
        }
        try await Task.sleep(for: .milliseconds(300))
        let started = ContinuousClock.now
        try await other.simpleQuery("SELECT 1")
        #expect(!transactionDone.withLock { $0 }, "the blocking call did not wait for the slow BEGIN")
        #expect(ContinuousClock.now - started < .seconds(1))
        try await transaction
        #expect(transactionDone.withLock { $0 } && slow.isReusable)
        await slow.close()
        await other.close()
        try await thread.shutdownGracefully()
    }

    /// A prelude that fails leaves no transaction behind: the error thrown is the prelude's,
    /// and the connection goes back to the pool clean and is used again.
    @Test func aFailingPreludeIsRolledBackAndItsConnectionReused() async throws {
        let client = try pool(max: 1)
        let backend = try await client.withConnection { try await $0.query("SELECT pg_backend_pid()").one().decode(Int32.self) }
        let error = await #expect(throws: PostgresError.self) {
            try await client.withTransaction(prelude: { ["SELECT 1 / 0"] }) { _ in }
        }
        #expect(error?.sqlState == "22012")
        let after = try await client.withConnection { try await $0.query("SELECT pg_backend_pid()").one().decode(Int32.self) }
        #expect(after == backend, "the connection was rolled back and reused, not closed")
    }

    /// `BEGIN` sent to a backend that is gone fails as a lost connection, which is what lets
    /// the pool start the transaction again on another.
    @Test func beginOnATerminatedBackendIsALostConnection() async throws {
        let thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        let connection = try await PostgresConnection.connect(
            configuration: .init(url: try TestDatabase.url(), applicationName: "begin-on-dead-backend"), threadPool: thread,
            logger: TestDatabase.logger)
        let backend = connection.backendPID
        let superuser = try await TestDatabase.superuser()
        try await superuser.withConnection { try await $0.query("SELECT pg_terminate_backend(\(backend))") }
        // Until the backend is gone (a busy machine can take a moment).
        for _ in 0..<100 {
            let alive = try await superuser.withConnection {
                try await $0.query("SELECT count(*)::int FROM pg_stat_activity WHERE pid = \(backend)").one().decode(Int.self)
            }
            if alive == 0 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let error = await #expect(throws: PostgresError.self) {
            try await connection.withTransaction { _ in }
        }
        #expect(error?.isConnectionLost == true, "\(String(reflecting: error))")
        await connection.close()
        try await thread.shutdownGracefully()
    }

    /// A cancelled task's transaction is still rolled back, not skipped: its connection comes
    /// back clean and is used again (a connection left inside a transaction would be closed).
    @Test func aCancelledTransactionIsRolledBackAndItsConnectionReused() async throws {
        let client = try pool(max: 1)
        let table = "cancel_tx_\(UInt32.random(in: 0...UInt32.max))"
        let backend = try await client.withConnection { connection in
            try await connection.simpleQuery("CREATE TABLE \(table) (v int)")
            return try await connection.query("SELECT pg_backend_pid()").one().decode(Int32.self)
        }
        let transaction = Task {
            try await client.withTransaction { connection in
                try await connection.query("INSERT INTO \(identifier: table) VALUES (\(1))")
                try await connection.query("SELECT pg_sleep(10)")
            }
        }
        try await Task.sleep(for: .milliseconds(300))
        transaction.cancel()
        await #expect(throws: (any Error).self) { try await transaction.value }
        let (sameBackend, rows) = try await client.withConnection { connection in
            let pid = try await connection.query("SELECT pg_backend_pid()").one().decode(Int32.self)
            let rows = try await connection.query("SELECT count(*)::int FROM \(identifier: table)").one().decode(Int.self)
            try await connection.simpleQuery("DROP TABLE \(table)")
            return (pid == backend, rows)
        }
        #expect(rows == 0)
        #expect(sameBackend, "the connection was rolled back and reused, not closed")
    }

    /// Larger than the socket's buffers both ways: the non-blocking send waits for the
    /// socket to drain (`PQflush` returns 1), and the answer arrives in many reads.
    @Test func largeParametersAndResultsCrossTheNonBlockingSocket() async throws {
        // A long wait allowed: in one busy full run the first lease (opening the connection)
        // took past the default 5 s. A pool that lost a wake-up would still fail here.
        let client = try pool(max: 2, waitTimeout: .seconds(30))
        let big = String(repeating: "0123456789abcdef", count: 1 << 18)  // 4 MiB
        let (length, echoed) = try await client.withConnection { connection in
            try await connection.query("SELECT length(\(big)::text), repeat(\("ab")::text, \(1 << 22))").one()
                .decode((Int, String).self)
        }
        #expect(length == big.utf8.count)
        #expect(echoed.utf8.count == 1 << 23 && echoed.hasPrefix("abab") && echoed.hasSuffix("abab"))
        // Many at once, all through the one reactor thread.
        try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<200 {
                group.addTask { try await client.withConnection { try await $0.query("SELECT \(index)::int").one().decode(Int.self) } }
            }
            var sum = 0
            for try await value in group { sum += value }
            #expect(sum == (0..<200).reduce(0, +))
        }
    }

    /// More parameters than the protocol can count: refused before anything is sent, so the
    /// statements before it in the pipeline do not run (and commit) on their own.
    @Test func tooManyParametersAreRefusedBeforeAnythingIsSent() async throws {
        let client = try pool(max: 1)
        let table = "params_\(UInt32.random(in: 0...UInt32.max))"
        try await client.withConnection { connection in
            try await connection.simpleQuery("CREATE TABLE \(table) (v int)")
            let placeholders = (1...65_536).map { "$\($0)" }.joined(separator: ",")
            let error = await #expect(throws: PostgresError.self) {
                try await connection.pipeline([
                    "INSERT INTO \(identifier: table) VALUES (\(1))",
                    PostgresQuery(unsafeSQL: "SELECT coalesce(\(placeholders))", bindings: Array(repeating: "1", count: 65_536)),
                ])
            }
            #expect(error?.code == .encoding)
            let rows = try await connection.query("SELECT count(*)::int FROM \(identifier: table)").one().decode(Int.self)
            #expect(rows == 0)
            #expect(connection.isReusable)
            try await connection.simpleQuery("DROP TABLE \(table)")
        }
    }

    /// The server reports a wrong parameter count as 08P01, a "connection exception" class,
    /// on a connection that is fine: it is the caller's error, not a lost connection to retry.
    @Test func aWrongParameterCountIsNotALostConnection() async throws {
        let client = try pool(max: 1)
        let attempts = Mutex(0)
        let error = await #expect(throws: PostgresError.self) {
            try await client.withConnection(retryingIfLost: true) { connection in
                attempts.withLock { $0 += 1 }
                return try await connection.query(PostgresQuery(unsafeSQL: "SELECT $1::int + $2::int", bindings: ["1"]))
            }
        }
        #expect(error?.sqlState == "08P01")
        #expect(error?.isConnectionLost == false && error?.isUnavailable == false)
        #expect(attempts.withLock { $0 } == 1)
        let one = try await client.withConnection { try await $0.query("SELECT 1").one().decode(Int.self) }
        #expect(one == 1)
    }

    @Test func nulCharactersAreRefusedNotTruncated() async throws {
        let client = try pool(max: 1)
        let error = await #expect(throws: PostgresError.self) {
            try await client.withConnection { try await $0.query("SELECT \("a\u{0}b")::text") }
        }
        #expect(error?.code == .encoding)
        // The connection is fine afterwards.
        #expect(try await client.withConnection { try await $0.query("SELECT 1").one().decode(Int.self) } == 1)
    }

    @Test func aConnectionReturnedInsideATransactionIsNotReused() async throws {
        let client = try pool(max: 1)
        let first = try await client.withConnection { connection in
            try await connection.simpleQuery("BEGIN")
            try await connection.simpleQuery("SET LOCAL statement_timeout = '1s'")
            return connection.backendPID
        }
        let (second, status) = try await client.withConnection { connection in
            (connection.backendPID, try await connection.query("SELECT current_setting('statement_timeout')").one().decode(String.self))
        }
        #expect(second != first)
        #expect(status == "0")
        // The abandoned one was closed, not left open on the server.
        try await Task.sleep(for: .milliseconds(200))
        let stillThere = try await TestDatabase.superuser().withConnection { connection in
            try await connection.query("SELECT count(*)::int FROM pg_stat_activity WHERE pid = \(first)").one().decode(Int.self)
        }
        #expect(stillThere == 0)
    }

    @Test func unreachableServerFailsFastWithUnavailable() async throws {
        let client = try pool(max: 2, url: "postgresql://nobody@/none?host=/nonexistent-surveyd-socket-dir&connect_timeout=2")
        let first = await #expect(throws: PostgresError.self) { try await client.withConnection { _ in } }
        #expect(first?.code == .poolUnavailable)
        #expect(first?.isUnavailable == true)
        // During the backoff, callers hear it at once, without a new attempt (which would
        // wait on the blocking pool's threads, busy with the other tests' connects on a
        // loaded machine: the first call alone once took 3.5 s there).
        let start = ContinuousClock.now
        let second = await #expect(throws: PostgresError.self) { try await client.withConnection { _ in } }
        #expect(second?.code == .poolUnavailable)
        #expect(ContinuousClock.now - start < .seconds(2))
    }

    @Test func setsApplicationName() async throws {
        let name = "surveyd-name-test-\(UInt32.random(in: 0...UInt32.max))"
        let client = try pool(max: 1, name: name)
        let seen = try await client.withConnection { connection in
            try await connection.query("SELECT current_setting('application_name')").one().decode(String.self)
        }
        #expect(seen == name)
    }

    @Test func listenReceivesNotifications() async throws {
        let client = try pool(max: 1)
        let listener = try await client.makeDedicatedConnection()
        try await listener.listen("jobs_ready")
        try await client.withConnection { try await $0.query("SELECT pg_notify('jobs_ready', \("batch 7"))") }
        var received: [PostgresNotification] = []
        for _ in 0..<20 where received.isEmpty {
            received = try await listener.notifications(timeout: .milliseconds(250))
        }
        #expect(received.map(\.channel) == ["jobs_ready"])
        #expect(received.map(\.payload) == ["batch 7"])
        // Nothing more: the wait times out empty.
        #expect(try await listener.notifications(timeout: .milliseconds(50)).isEmpty)
        await listener.close()
    }
}

/// Counts how many callers are inside a section at once, and the most ever seen.
final class ConcurrencyGauge: Sendable {
    private let state = Mutex<(active: Int, peak: Int)>((0, 0))
    func enter() { state.withLock { $0.active += 1; $0.peak = max($0.peak, $0.active) } }
    func leave() { state.withLock { $0.active -= 1 } }
    var peak: Int { state.withLock { $0.peak } }
}
