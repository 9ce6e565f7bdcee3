import CLibPQ
import Foundation
import Synchronization

/// Running statements on the non-blocking socket: sending them in pipeline mode, waiting
/// for the socket through `SocketReactor`, reading and checking each result, and copying
/// its rows out of libpq's memory.
extension PostgresConnection {
    func execute(_ query: PostgresQuery, until bound: ContinuousClock.Instant) async throws(PostgresError) -> PostgresRows {
        let outsideTransaction = PQtransactionStatus(handle) == PQTRANS_IDLE
        do {
            return try await executePipeline([query], until: bound)[0]
        } catch let error where error.isStalePreparedStatement && outsideTransaction {
            // The statement ran in a transaction of its own, which the error rolled back:
            // running it again, prepared afresh, is what the caller asked for.
            return try await executePipeline([query], until: bound)[0]
        }
    }

    /// Runs a script of one or more statements without parameters (the simple query
    /// protocol), for trusted SQL such as session settings and migrations. Values never go
    /// here: use `query(_:)`. Waits like a statement, bounded by the deadline.
    public func simpleQuery(_ script: String) async throws {
        guard !script.utf8.contains(0) else {
            throw PostgresError(code: .encoding, message: "the script contains a NUL character")
        }
        await cancelDelivered()
        let bound = try statementBound()
        use.enter("a script")
        defer { use.leave() }
        guard !poisoned.load(ordering: .acquiring) else {
            throw PostgresError(code: .connectionAbandoned, message: "the connection was left unusable by an earlier failure")
        }
        guard PQsendQuery(handle, script) == 1 else { throw failure(script) }
        try await flush(until: bound, sql: script)
        var firstError: PostgresError?
        // Every statement of the script has a result; the NULL after the last ends it.
        while let result = try await nextResult(until: bound, sql: script) {
            do throws(PostgresError) { _ = try check(result, sql: script) } catch { firstError = firstError ?? error }
            PQclear(result)
        }
        if let firstError { throw firstError }
    }

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
                !query.isPreparable || preparedEarlier.contains(query.sql) ? .unnamed : statements.plan(for: query.sql)
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

    /// Sends what libpq still holds, waiting for the socket when its buffer is full.
    private func flush(until bound: ContinuousClock.Instant, sql: String?) async throws(PostgresError) {
        while true {
            switch PQflush(handle) {
            case 0: return
            case 1:
                // Take in what the server sent meanwhile, so it never waits on us to read.
                guard PQconsumeInput(handle) == 1 else { throw failure(nil) }
                if await SocketReactor.shared.wait(for: PQsocket(handle), .readableOrWritable, until: bound) == .timedOut {
                    throw abandoned(sql, at: bound)
                }
            default: throw failure(nil)
            }
        }
    }

    /// The next result, waiting for the server until libpq has a whole one.
    ///
    /// `readingOn`: earlier results of the pipeline have been read, so more of its answer
    /// may have arrived meanwhile. The server writes each segment's answer as it finishes
    /// it; reading the socket once before waiting costs a `recv` that may find nothing,
    /// where a wait costs the reactor's wake-up and this task's (two thread switches).
    private func nextResult(
        until bound: ContinuousClock.Instant, sql: String?, readingOn: Bool = false
    ) async throws(PostgresError) -> OpaquePointer? {
        if readingOn, PQisBusy(handle) == 1 {
            guard PQconsumeInput(handle) == 1 else { throw failure(nil) }
        }
        while PQisBusy(handle) == 1 {
            if clibpq_tls_read_pending(handle) == 0,
                await SocketReactor.shared.wait(for: PQsocket(handle), .readable, until: bound) == .timedOut
            {
                throw abandoned(sql, at: bound)
            }
            guard PQconsumeInput(handle) == 1 else { throw failure(nil) }
        }
        guard let result = PQgetResult(handle) else { return nil }
        switch PQresultStatus(result) {
        case PGRES_COPY_IN, PGRES_COPY_OUT, PGRES_COPY_BOTH:
            // libpq would hand out this result forever; nothing here speaks COPY.
            PQclear(result)
            poisoned.store(true, ordering: .releasing)
            throw PostgresError(code: .protocolViolation, message: "COPY is not supported on this path")
        default:
            return result
        }
    }

    /// The protocol counts a statement's parameters in 16 bits.
    static let maximumParameters = Int(UInt16.max)

    /// The server said nothing by `bound`. What it is doing is unknown (a partition, a
    /// stopped backend, a statement blocked on a lock past the caller's deadline), and so is
    /// the protocol's state: the connection is never used again, and closing it ends the
    /// server's side. When it was the caller's deadline (the server may be healthy, the
    /// statement merely slow), the statement is also cancelled, so that it does not run on
    /// for nobody until its own timeout.
    private func abandoned(_ sql: String?, at bound: ContinuousClock.Instant) -> PostgresError {
        poisoned.store(true, ordering: .releasing)
        let callersDeadline = deadline.map { bound >= $0 } ?? false
        if callersDeadline { Thread.detachNewThread { self.sendCancelRequest() } }
        var error = PostgresError(
            code: .timedOut,
            message: callersDeadline
                ? "the caller's deadline passed before the server answered; the statement was cancelled and the connection abandoned"
                : "no answer from the server within the connection's limits; the connection is abandoned",
            query: sql)
        error.unresponsive = !callersDeadline
        return error
    }

    private func failure(_ sql: String?) -> PostgresError {
        PostgresError(
            code: PQstatus(handle) == CONNECTION_OK ? .protocolViolation : .connectionClosed,
            message: String(cString: PQerrorMessage(handle)), query: sql)
    }

    /// Turns a libpq result into rows or a `PostgresError`.
    func check(_ result: OpaquePointer?, sql: String) throws(PostgresError) -> OpaquePointer {
        guard let result else { throw failure(sql) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return result
        case PGRES_FATAL_ERROR, PGRES_NONFATAL_ERROR, PGRES_BAD_RESPONSE:
            func field(_ code: Character) -> String? {
                PQresultErrorField(result, Int32(code.asciiValue!)).map { String(cString: $0) }
            }
            let broken = PQstatus(handle) != CONNECTION_OK
            // A write refused because the server is a standby: the primary moved (a failover
            // demoted this one), or the URL names a standby. Not this statement's fault,
            // and the connection is of no more use for writing.
            let standby = field("C") == PostgresError.SQLState.readOnlySQLTransaction && serverIsReadOnly
            if standby { poisoned.store(true, ordering: .releasing) }
            var error = PostgresError(
                code: broken ? .connectionClosed : standby ? .notPrimary : .server,
                sqlState: field("C"),
                message: field("M") ?? String(cString: PQerrorMessage(handle)),
                detail: field("D"), hint: field("H"), constraint: field("n"), query: sql)
            error.routine = field("R")
            throw error
        default:
            throw PostgresError(
                code: .protocolViolation, message: "unexpected result status \(PQresultStatus(result))", query: sql)
        }
    }

    /// Whether the server takes no writes at all, as it last reported: a hot standby
    /// (`in_hot_standby`), or a primary made read-only (`default_transaction_read_only`, as
    /// failover managers do while they demote one). PostgreSQL 14 and later report both at
    /// connection start and whenever they change. A write refused inside one of our own
    /// `BEGIN READ ONLY` transactions is neither: a bug, not a failover.
    var serverIsReadOnly: Bool {
        func on(_ parameter: String) -> Bool {
            PQparameterStatus(handle, parameter).map { String(cString: $0) == "on" } ?? false
        }
        return on("in_hot_standby") || on("default_transaction_read_only")
    }

    private func copyRows(_ result: OpaquePointer) -> PostgresRows {
        let columnCount = PQnfields(result)
        let rowCount = PQntuples(result)
        let columns = (0..<columnCount).map { String(cString: PQfname(result, $0)) }
        var rows: [[String?]] = []
        rows.reserveCapacity(Int(rowCount))
        for row in 0..<rowCount {
            var values: [String?] = []
            values.reserveCapacity(Int(columnCount))
            for column in 0..<columnCount {
                if PQgetisnull(result, row, column) == 1 {
                    values.append(nil)
                } else {
                    // The length libpq knows, instead of `strlen` over the value again.
                    let bytes = UnsafeRawPointer(PQgetvalue(result, row, column)!).assumingMemoryBound(to: UInt8.self)
                    values.append(String(decoding: UnsafeBufferPointer(start: bytes, count: Int(PQgetlength(result, row, column))), as: UTF8.self))
                }
            }
            rows.append(values)
        }
        let affected = Int(String(cString: PQcmdTuples(result))) ?? 0
        return PostgresRows(columns: columns, values: rows, affectedRows: affected)
    }
}
