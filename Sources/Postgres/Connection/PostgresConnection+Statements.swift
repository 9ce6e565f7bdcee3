import CLibPQ
import Foundation
import Synchronization

/// Running statements on the non-blocking socket (pipelines in `+Pipelines`): waiting
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

    /// Sends what libpq still holds, waiting for the socket when its buffer is full.
    func flush(until bound: ContinuousClock.Instant, sql: String?) async throws(PostgresError) {
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
    func nextResult(
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

    func failure(_ sql: String?) -> PostgresError {
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

    func copyRows(_ result: OpaquePointer) -> PostgresRows {
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
