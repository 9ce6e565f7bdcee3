import Synchronization
import TestSupport
import Testing

@testable import Postgres

/// `PostgresClient.batched`: reads that wait while the batching connection is busy go out
/// together, and each is still a transaction of its own.
@Suite struct BatchingTests {
    func client(connections: Int = 2) throws -> PostgresClient {
        var configuration = PostgresClient.Configuration(
            connection: .init(url: try TestDatabase.url(), applicationName: "batching-\(UInt32.random(in: 0...UInt32.max))"))
        configuration.maximumConnections = connections
        configuration.maximumBatchingConnections = 1
        return PostgresClient(configuration: configuration, logger: TestDatabase.logger)
    }

    /// Starts a read that holds the only batching connection for `seconds`, and returns
    /// once it is on the server. A second is ample for the reads a test queues behind it to
    /// arrive, even on a loaded machine: they are then all in the next batch.
    func occupy(_ client: PostgresClient, for seconds: Double) async throws -> Task<[PostgresRows], any Error> {
        let task = Task { try await client.batched(deadline: nil) { ["SELECT pg_sleep(\(seconds))::text"] } }
        while client.batches.withLock({ $0.taken }) == 0 { try await Task.sleep(for: .milliseconds(5)) }
        return task
    }

    @Test func readsWaitingWhileTheConnectionIsBusyGoOutTogether() async throws {
        let client = try client()
        let blocker = try await occupy(client, for: 1.0)
        let values = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for value in 1...20 {
                group.addTask { (value, try await client.batched(deadline: nil) { ["SELECT \(value)::int * 2"] }[0].one().decode(Int.self)) }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        _ = try await blocker.value
        #expect(values.count == 20)
        #expect(values.allSatisfy { $0.value == $0.key * 2 })
        // One batch for the blocker; the twenty arrived while it ran, so at most two more
        // (one if all were queued before it ended). Sent one by one, it would be 21.
        #expect(client.batches.withLock { $0.taken } <= 3)
        await client.shutDown()
    }

    @Test func eachReadOfABatchIsATransactionOfItsOwn() async throws {
        let client = try client()
        let blocker = try await occupy(client, for: 1.0)
        // Queued in this order behind the blocker, so they share a batch: a setting, an
        // error, then reads that must see neither.
        let setting = Task {
            try await client.batched(deadline: nil) {
                ["SELECT set_config('app.batch_test', 'mine', true)", "SELECT current_setting('app.batch_test')"]
            }[1].one().decode(String.self)
        }
        try await Task.sleep(for: .milliseconds(20))
        let failing = Task { try await client.batched(deadline: nil) { ["SELECT 1/0", "SELECT 1"] } }
        try await Task.sleep(for: .milliseconds(20))
        let after = Task {
            try await client.batched(deadline: nil) {
                ["SELECT coalesce(current_setting('app.batch_test', true), '')", "SELECT 2"]
            }
        }
        #expect(try await setting.value == "mine")
        await #expect(throws: PostgresError.self) { try await failing.value }
        let rows = try await after.value
        #expect(try rows[0].one().decode(String.self) == "", "the setting ended with its own segment")
        #expect(try rows[1].one().decode(Int.self) == 2, "the error stopped its own segment only")
        _ = try await blocker.value
        #expect(client.batches.withLock { $0.taken } == 2)
        await client.shutDown()
    }

    @Test func aReadPastItsDeadlineIsNotSent() async throws {
        let client = try client()
        let error = await #expect(throws: PostgresError.self) {
            try await client.batched(deadline: .now - .milliseconds(1)) { ["SELECT 1"] }
        }
        #expect(error?.code == .timedOut)
        await client.shutDown()
    }

    /// A read that runs late is stopped by the server at its own `statement_timeout`; the
    /// rest of its batch carries on, on the same connection. (Bounded by the hurried read's
    /// deadline, which here passes before the server stops it, the batch would have
    /// abandoned the connection, and the patient read would have run on another.)
    @Test func aSlowReadIsStoppedOnTheServerAndTheRestOfItsBatchGoesOn() async throws {
        let client = try client(connections: 1)
        let blocker = Task {
            try await client.batched(deadline: nil) { ["SELECT pg_backend_pid() FROM pg_sleep(0.3)"] }[0].one().decode(Int32.self)
        }
        while client.batches.withLock({ $0.taken }) == 0 { try await Task.sleep(for: .milliseconds(5)) }
        let hurried = Task {
            // Sent well before its deadline, even on a loaded machine; stopped by the server
            // a second after it.
            try await client.batched(deadline: .now + .seconds(3)) {
                ["SELECT set_config('statement_timeout', '4000', true)", "SELECT pg_sleep(10)::text"]
            }
        }
        try await Task.sleep(for: .milliseconds(20))
        let patient = Task { try await client.batched(deadline: nil) { ["SELECT pg_backend_pid()"] }[0].one().decode(Int32.self) }
        let started = ContinuousClock.now
        let error = await #expect(throws: PostgresError.self) { try await hurried.value }
        #expect(error?.sqlState == "57014", "cancelled by its statement timeout")
        let backend = try await patient.value
        #expect(ContinuousClock.now - started < .seconds(8))
        #expect(try await blocker.value == backend, "the same connection throughout")
        #expect(client.batches.withLock { $0.taken } == 2)
        await client.shutDown()
    }

    /// A segment that begins a transaction and leaves it open would hold the segments
    /// after it, under its settings: they fail, and the connection is not used again.
    @Test func aSegmentLeavingATransactionOpenFailsTheOnesAfterIt() async throws {
        let client = try client(connections: 1)
        let blocker = try await occupy(client, for: 1.0)
        let opening = Task {
            try await client.batched(deadline: nil) { ["BEGIN", "SELECT set_config('app.batch_test', 'leaked', true)"] }
        }
        try await Task.sleep(for: .milliseconds(20))
        let after = Task {
            try await client.batched(deadline: nil) { ["SELECT coalesce(current_setting('app.batch_test', true), '')"] }
        }
        _ = try await blocker.value
        await #expect(throws: PostgresError.self) { try await opening.value }
        await #expect(throws: PostgresError.self) { try await after.value }
        let fresh = try await client.batched(deadline: nil) { ["SELECT coalesce(current_setting('app.batch_test', true), '')"] }
        #expect(try fresh[0].one().decode(String.self) == "")
        await client.shutDown()
    }
}
