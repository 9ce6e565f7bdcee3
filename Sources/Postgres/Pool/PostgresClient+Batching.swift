import Metrics
import Synchronization

/// Short reads from many callers, sent together: while the connections given to batches
/// are busy, the reads that arrive wait, and the next free one sends all of them at once,
/// each as a transaction of its own (its statements between two syncs), and reads their
/// answers back.
///
/// Why: under load, a read's cost on both sides is mostly waking up, not working. Each
/// round trip wakes the server's backend and this process's reactor and task once; sent
/// one by one, every read pays for both (`docs/BENCHMARKS.md`, HTTP run 5). Batched, a
/// busy moment's reads share them. When reads are few, a batch holds one read and costs
/// what a single round trip does, plus a task hop.
///
/// What a batched read gives up, so only short, independent reads belong here: it is not
/// cancelled on the server when its caller's task is (the segment's own
/// `statement_timeout` bounds it); it waits behind the reads sent before it on the same
/// connection; and it runs in an implicit transaction, so a setting it needs must be made
/// with `set_config(…, true)` in its own first statement rather than by `BEGIN` and `SET
/// LOCAL`, which would outlive an error into the next caller's segment.
extension PostgresClient {
    /// Runs the statements `segment` returns as one transaction of their own, batched
    /// with other callers' on one of at most `maximumBatchingConnections` connections, and
    /// returns each statement's rows; the first error is thrown. `segment` is called just
    /// before sending, so what it computes from the time (what is left of a deadline) is
    /// current.
    ///
    /// Only for reads, and never transaction control: a segment whose connection was lost
    /// runs again, like `withConnection(retryingIfLost: true)`, and one that left a
    /// transaction open fails the segments after it. `deadline` is kept on the server by
    /// the segment's own `statement_timeout`, which `segment` should set; a read whose
    /// deadline passes before it is sent fails with `timedOut` without being sent.
    public func batched(
        deadline: ContinuousClock.Instant?, _ segment: @escaping @Sendable () -> [PostgresQuery]
    ) async throws -> [PostgresRows] {
        let entry = BatchEntry(segment: segment, deadline: deadline)
        let startsRunner = try batches.withLock { queue throws(PostgresError) -> Bool in
            guard queue.pending.count < configuration.maximumWaiters else {
                throw PostgresError(code: .poolExhausted, message: "\(configuration.maximumWaiters) reads already waiting for a batch")
            }
            queue.pending.append(entry)
            guard queue.runners < configuration.maximumBatchingConnections else { return false }
            queue.runners += 1
            return true
        }
        // Detached: a batch carries other callers' reads, so it must not inherit this
        // caller's task-local values, priority or cancellation.
        if startsRunner { Task.detached { await self.runBatches() } }
        return try await entry.outcome.value
    }

    /// Sends batches while reads are waiting, then ends.
    private func runBatches() async {
        while let batch = batches.withLock({ queue -> [BatchEntry]? in
            guard !queue.pending.isEmpty else {
                queue.runners -= 1
                return nil
            }
            let batch = Array(queue.pending.prefix(configuration.maximumBatchSize))
            queue.pending.removeFirst(batch.count)
            queue.taken += 1
            return batch
        }) {
            let again = await run(batch)
            // First in line: they have waited longest.
            if !again.isEmpty { batches.withLock { $0.pending.insert(contentsOf: again, at: 0) } }
        }
    }

    /// Sends `batch` on one connection and gives each caller its outcome; returns the
    /// entries to send again.
    ///
    /// The batch waits, for a connection and for the server, as long as its most patient
    /// caller may. A caller's own time is kept by its segment's `statement_timeout`, which
    /// stops its statement on the server, cleanly and with the connection kept, while the
    /// rest of the batch goes on; bounding the batch by its most pressed caller instead
    /// would abandon the connection, and everyone's reads on it, whenever one read ran
    /// late. The price: a caller whose deadline is earlier than the others' in its batch
    /// may be answered that much late by a silent server. A service's requests have one
    /// timeout, so the deadlines in a batch differ by the moments between their arrivals.
    private func run(_ batch: [BatchEntry]) async -> [BatchEntry] {
        var live = unexpired(batch)
        guard !live.isEmpty else { return [] }
        metrics.batches.increment()
        metrics.batchedReads.increment(by: live.count)
        let latest = live.contains { $0.deadline == nil } ? nil : live.lazy.compactMap(\.deadline).max()
        let outcomes: [Result<[PostgresRows], PostgresError>]
        do {
            let connection = try await leaseHealthy(deadline: latest)
            // A cancel request still on its way (the last holder's) must not stop one of
            // these segments.
            await connection.cancelDelivered()
            // Some may have run out of time waiting for the connection.
            live = unexpired(live)
            guard !live.isEmpty else {
                release(connection)
                return []
            }
            do {
                outcomes = await connection.executeSegments(live.map { $0.segment() }, until: try connection.statementBound())
            } catch {
                release(connection)
                throw error
            }
            if let changed = outcomes.lazy.compactMap(\.failure).first(where: \.saysServerChanged) {
                release(connection, after: changed)
            } else {
                release(connection)
            }
        } catch {
            let error = error as? PostgresError ?? PostgresError(code: .poolUnavailable, message: "\(error)")
            outcomes = live.map { _ in .failure(error) }
        }
        var again: [BatchEntry] = []
        for (entry, outcome) in zip(live, outcomes) {
            // Its connection was lost, or a prepared statement went stale: harmless to send
            // a read again, as `withConnection(retryingIfLost: true)` does.
            if case .failure(let error) = outcome, error.isConnectionLost || error.isStalePreparedStatement,
                entry.attempts < maximumRetries
            {
                entry.attempts += 1
                again.append(entry)
            } else {
                entry.outcome.finish(outcome.mapError { $0 })
            }
        }
        return again
    }

    /// The entries whose deadline has not passed; the others are told so.
    private func unexpired(_ entries: [BatchEntry]) -> [BatchEntry] {
        let now = clock.now
        return entries.filter { entry in
            guard let deadline = entry.deadline, deadline <= now else { return true }
            entry.outcome.finish(.failure(PostgresError(code: .timedOut, message: "the caller's deadline passed before the statement was sent")))
            return false
        }
    }
}

/// The reads waiting for a batch, and how many batches are being sent.
struct BatchQueue: ~Copyable {
    var pending: [BatchEntry] = []
    var runners = 0
    /// Batches taken from the queue so far (for tests; operators have the metrics).
    var taken = 0
}

/// One caller's read, waiting for a batch.
///
/// `@unchecked Sendable`: `attempts` is only touched by the one runner holding the entry
/// (it passes from the queue to a runner under the queue's lock); the rest is immutable or
/// synchronised.
final class BatchEntry: @unchecked Sendable {
    let segment: @Sendable () -> [PostgresQuery]
    let deadline: ContinuousClock.Instant?
    let outcome = BatchOutcome()
    var attempts = 0

    init(segment: @escaping @Sendable () -> [PostgresQuery], deadline: ContinuousClock.Instant?) {
        self.segment = segment
        self.deadline = deadline
    }
}

/// A read's outcome, given once by a runner and awaited by its caller, in either order.
final class BatchOutcome: Sendable {
    private enum State {
        case pending
        case awaited(CheckedContinuation<[PostgresRows], any Error>)
        case finished(Result<[PostgresRows], any Error>)
    }

    private let state = Mutex(State.pending)

    var value: [PostgresRows] {
        get async throws {
            try await withCheckedThrowingContinuation { continuation in
                let finished = state.withLock { state -> Result<[PostgresRows], any Error>? in
                    if case .finished(let result) = state { return result }
                    state = .awaited(continuation)
                    return nil
                }
                if let finished { continuation.resume(with: finished) }
            }
        }
    }

    func finish(_ result: Result<[PostgresRows], any Error>) {
        let awaiting = state.withLock { state -> CheckedContinuation<[PostgresRows], any Error>? in
            defer { state = .finished(result) }
            if case .awaited(let continuation) = state { return continuation }
            return nil
        }
        awaiting?.resume(with: result)
    }
}

extension Result {
    fileprivate var failure: Failure? {
        if case .failure(let error) = self { error } else { nil }
    }
}
