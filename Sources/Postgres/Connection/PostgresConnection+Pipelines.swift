import CLibPQ
import Foundation
import Synchronization

/// Pipelines: sending several statements, or several callers' segments each ending in a
/// sync of its own, without waiting in between, and reading every result back against
/// what was sent.
extension PostgresConnection {
    /// What was sent, in order, so the results can be read back against it.
    private enum Step {
        case prepare(sql: String, name: String)
        case run(PostgresQuery)
    }

    /// Sends `queries` and a single sync, then reads every result: one implicit transaction
    /// (unless the statements begin their own), and the first error is thrown. A statement
    /// seen before on this connection runs as the statement prepared then; a new one is
    /// prepared in the same round trip (`PreparedStatements`).
    func executePipeline(_ queries: [PostgresQuery], until bound: ContinuousClock.Instant) async throws(PostgresError) -> [PostgresRows] {
        guard !queries.isEmpty else { return [] }
        return try await executeSegments([queries], until: bound)[0].get()
    }

    /// Sends every segment followed by a sync of its own, without waiting in between (libpq
    /// 15 writes at each sync), then reads every result. Each segment is a transaction of its own (implicit: the statements
    /// between two syncs), so an error stops the rest of its segment only, and each gets
    /// its own outcome. Several callers' short reads can so share one round trip and one
    /// wake-up of the server (`PostgresClient.batched`).
    ///
    /// The socket is non-blocking: every libpq call here returns at once, and waiting for
    /// the server is a suspension on `SocketReactor`, which holds no thread, until `bound`
    /// at most: a server silent past it fails the segments not yet answered with
    /// `timedOut`, and the connection, its protocol state unknown, is abandoned.
    func executeSegments(
        _ segments: [[PostgresQuery]], until bound: ContinuousClock.Instant
    ) async -> [Result<[PostgresRows], PostgresError>] {
        use.enter("a statement")
        defer { use.leave() }
        guard !poisoned.load(ordering: .acquiring) else {
            let error = PostgresError(code: .connectionAbandoned, message: "the connection was left unusable by an earlier failure")
            return segments.map { _ in .failure(error) }
        }
        // Refused here, before anything is sent: were libpq to refuse one statement, the
        // ones queued before it would still be synced, and commit, as an implicit transaction.
        let refusals = segments.map(Self.refusal)
        let toSend = segments.indices.filter { refusals[$0] == nil && !segments[$0].isEmpty }
        var outcomes: [Result<[PostgresRows], PostgresError>] = segments.indices.map { index in
            refusals[index].map { .failure($0) } ?? .success([])
        }
        guard !toSend.isEmpty else { return outcomes }
        guard PQenterPipelineMode(handle) == 1 else {
            let error = failure(nil)
            for index in toSend { outcomes[index] = .failure(error) }
            return outcomes
        }
        // Sending stops at the first segment libpq refuses (out of memory, a broken
        // connection); that one is still synced, so what it queued is read back and
        // fails, and the ones after it are not sent.
        var sent: [(index: Int, steps: [Step], allSent: Bool, synced: Bool)] = []
        var preparedEarlier: Set<String> = []
        for index in toSend {
            let (steps, allSent) = send(segments[index], notExecuting: preparedEarlier)
            let synced = PQpipelineSync(handle) == 1
            sent.append((index, steps, allSent, synced))
            for case .prepare(let sql, _) in steps { preparedEarlier.insert(sql) }
            guard allSent && synced else { break }
        }
        // Without its sync, a segment's answer would never come: nothing of it is read.
        var reading = sent[0].synced
        var lostError: PostgresError?
        if reading {
            do throws(PostgresError) { try await flush(until: bound, sql: segments[toSend[0]][0].sql) } catch {
                lostError = error
                reading = false
            }
        }
        // Read everything that was sent, even after an error, so the connection leaves
        // pipeline mode clean.
        for (position, (index, steps, allSent, synced)) in sent.enumerated() {
            let queries = segments[index]
            if !synced { reading = false }
            var rows: [PostgresRows] = []
            rows.reserveCapacity(queries.count)
            var firstError: PostgresError?
            // Whether the segment began a transaction it did not end: the segments after it
            // would then run inside it, under its settings.
            var leftOpen = false
            for step in steps {
                var result: OpaquePointer?
                if reading {
                    do throws(PostgresError) {
                        result = try await nextResult(until: bound, sql: queries[0].sql, readingOn: position > 0)
                    } catch {
                        lostError = lostError ?? error
                        reading = false
                    }
                }
                // A sync where a statement's result belongs: the results are out of step with
                // what was sent, and none after this can be trusted to be whose it seems.
                if let synced = result, PQresultStatus(synced) == PGRES_PIPELINE_SYNC {
                    PQclear(synced)
                    result = nil
                    lostError = lostError ?? outOfStep()
                    reading = false
                }
                switch step {
                case .prepare(let sql, let name):
                    statements.prepared(sql, as: name, succeeded: result.map { PQresultStatus($0) == PGRES_COMMAND_OK } ?? false)
                    if let result, PQresultStatus(result) != PGRES_PIPELINE_ABORTED, PQresultStatus(result) != PGRES_COMMAND_OK {
                        do { _ = try check(result, sql: sql) } catch { firstError = firstError ?? error }
                    }
                case .run(let query):
                    if let result, PQresultStatus(result) != PGRES_PIPELINE_ABORTED {
                        do {
                            rows.append(copyRows(try check(result, sql: query.sql)))
                            leftOpen = Self.transactionIsOpen(after: result, openBefore: leftOpen)
                        } catch {
                            if error.isStalePreparedStatement { statements.forget(query.sql) }
                            firstError = firstError ?? error
                        }
                    }
                }
                guard let result else {
                    if reading { lostError = lostError ?? failure(nil) }
                    reading = false
                    continue
                }
                PQclear(result)
                // Each statement's results end with a NULL.
                do throws(PostgresError) {
                    while let extra = try await nextResult(until: bound, sql: nil) { PQclear(extra) }
                } catch {
                    lostError = lostError ?? error
                    reading = false
                }
            }
            // The segment's sync.
            if reading, PQstatus(handle) == CONNECTION_OK {
                do throws(PostgresError) {
                    let sync = try await nextResult(until: bound, sql: nil)
                    let inStep = sync.map { PQresultStatus($0) == PGRES_PIPELINE_SYNC } ?? false
                    if let sync { PQclear(sync) }
                    if !inStep {
                        lostError = lostError ?? outOfStep()
                        reading = false
                    }
                } catch {
                    lostError = lostError ?? error
                    reading = false
                }
            }
            // A transaction left open by one segment (its own `BEGIN`) would hold the next
            // ones: they are not given out, and the connection is not used again. (One
            // segment alone may: `withTransaction` sends `BEGIN` this way.)
            if leftOpen, position < sent.count - 1 {
                poisoned.store(true, ordering: .releasing)
                let error = PostgresError(
                    code: .protocolViolation, message: "a segment left a transaction open, which the segments after it would have run in",
                    query: queries[0].sql)
                firstError = firstError ?? error
                lostError = lostError ?? error
                reading = false
            }
            if let error = firstError ?? lostError {
                outcomes[index] = .failure(error)
            } else if !(allSent && synced) || rows.count < queries.count {
                outcomes[index] = .failure(failure(queries[min(rows.count, queries.count - 1)].sql))
            } else {
                outcomes[index] = .success(rows)
            }
        }
        // Segments never sent, after the one libpq refused.
        for index in toSend.dropFirst(sent.count) {
            outcomes[index] = .failure(lostError ?? failure(segments[index][0].sql))
        }
        // A connection that cannot leave pipeline mode is of no further use: `PQexec`
        // refuses to run in it, and a new pipeline would read this one's leftovers.
        if PQexitPipelineMode(handle) != 1 {
            poisoned.store(true, ordering: .releasing)
            let error = failure(nil)
            for (index, _, _, _) in sent {
                if case .success = outcomes[index] { outcomes[index] = .failure(error) }
            }
        }
        return outcomes
    }

    /// The pipeline's results did not match what was sent. Never expected of libpq; if it
    /// happened, a result could be given to the wrong caller, so the connection is
    /// poisoned and nothing more is read from it.
    private func outOfStep() -> PostgresError {
        poisoned.store(true, ordering: .releasing)
        return PostgresError(code: .protocolViolation, message: "the pipeline's results were out of step with what was sent")
    }

    /// Whether a transaction block is open after the statement that gave `result`, from its
    /// command tag (in pipeline mode libpq only learns the server's transaction state at a sync).
    private static func transactionIsOpen(after result: OpaquePointer, openBefore: Bool) -> Bool {
        guard let tag = PQcmdStatus(result) else { return openBefore }
        switch String(cString: tag) {
        case "BEGIN", "START TRANSACTION": return true
        case "COMMIT", "ROLLBACK": return false
        default: return openBefore
        }
    }

    /// Why `queries` cannot be sent at all, if they cannot: checked before anything is.
    private static func refusal(_ queries: [PostgresQuery]) -> PostgresError? {
        for query in queries {
            if query.bindings.count > maximumParameters {
                return PostgresError(
                    code: .encoding, message: "\(query.bindings.count) parameters; the protocol allows \(maximumParameters)",
                    query: query.sql)
            }
            if query.sql.utf8.contains(0) || query.bindings.contains(where: { $0?.utf8.contains(0) == true }) {
                return PostgresError(code: .encoding, message: "a query or parameter contains a NUL character", query: query.sql)
            }
        }
        return nil
    }

    /// Queues `queries` in libpq's output buffer (no waiting: the socket is non-blocking),
    /// preparing the ones this connection has not seen. A text whose prepare went out in an
    /// earlier segment of the same pipeline runs unnamed: that segment may fail before its
    /// prepare, which would leave the name undefined here.
    private func send(_ queries: [PostgresQuery], notExecuting preparedEarlier: Set<String>) -> (steps: [Step], allSent: Bool) {
        var steps: [Step] = []
        steps.reserveCapacity(queries.count * 2)
        for query in queries {
            let count = Int32(query.bindings.count)
            var name: String?
            let plan: PreparedStatements.Plan =
                !query.isPreparable || (!preparedEarlier.isEmpty && preparedEarlier.contains(query.sql))
                ? .unnamed : statements.plan(for: query.sql)
            switch plan {
            case .execute(let existing):
                name = existing
            case .prepare(let new):
                guard PQsendPrepare(handle, new, query.sql, count, nil) == 1 else {
                    statements.prepared(query.sql, as: new, succeeded: false)
                    return (steps, false)
                }
                steps.append(.prepare(sql: query.sql, name: new))
                name = new
            case .unnamed:
                name = nil
            }
            let accepted = withCStringArray(query.bindings) { values in
                if let name {
                    PQsendQueryPrepared(handle, name, count, values, nil, nil, 0)
                } else {
                    PQsendQueryParams(handle, query.sql, count, nil, values, nil, nil, 0)
                }
            }
            guard accepted == 1 else { return (steps, false) }
            steps.append(.run(query))
        }
        return (steps, true)
    }
}
