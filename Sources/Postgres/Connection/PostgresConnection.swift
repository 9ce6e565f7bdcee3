import CLibPQ
import Foundation
import Logging
import NIOPosix
import Synchronization

/// One connection to PostgreSQL through libpq.
///
/// Statements run on a non-blocking socket: the caller sends, suspends while the server
/// works, and is resumed by `SocketReactor`. The libpq calls that block (connecting,
/// `PQexec`, closing) run on the injected `NIOThreadPool`. None runs on an event loop or
/// on Swift's cooperative pool.
///
/// `@unchecked Sendable`: the `PGconn` is not thread-safe, and it is used by one holder at a
/// time. A pool leases a connection to exactly one task, whose calls run one after another
/// (each awaits the previous), wherever each resumes. The one call that comes from another
/// thread, `PQcancel`, is documented by libpq as safe for that and uses its own `PGcancel`
/// object; `inFlight` (a mutex) makes sure it only hits the statement it is for.
public final class PostgresConnection: @unchecked Sendable {
    public struct Configuration: Sendable {
        /// A libpq connection URI or `key=value` string.
        public var url: String
        /// Shown in `pg_stat_activity.application_name`; overrides one in `url`.
        public var applicationName: String
        /// Seconds to wait for the server when connecting, unless `url` says otherwise.
        public var connectTimeoutSeconds: Int

        public init(url: String, applicationName: String, connectTimeoutSeconds: Int = 5) {
            self.url = url
            self.applicationName = applicationName
            self.connectTimeoutSeconds = connectTimeoutSeconds
        }
    }

    private let handle: OpaquePointer
    private let cancelHandle: OpaquePointer?
    private let threadPool: NIOThreadPool
    private let noticeSink: NoticeSink
    private let inFlight = Mutex(CancelState())
    /// Every call into libpq that talks on the connection goes through it: a second task
    /// using the connection at the same time stops the program instead of racing libpq.
    private let use = ExclusiveUse()
    private let nextTicket = Atomic<UInt64>(0)
    private let closed = Atomic<Bool>(false)
    /// Set when libpq was left in a state this client cannot use again (stuck in pipeline
    /// mode, or in a COPY): the pool then closes the connection instead of reusing it.
    private let poisoned = Atomic<Bool>(false)
    /// Set for connections that own their thread pool (dedicated ones), shut down on close.
    private let ownsThreadPool: Bool
    /// Only touched by the one holder's calls, which run one after another.
    private var statements = PreparedStatements(capacity: 256)

    /// What cancellation needs to know, so that a cancel request only ever interrupts the
    /// statement it was made for.
    private struct CancelState {
        /// The statement running now, if any.
        var running: UInt64?
        /// A statement cancelled before it started: it never starts.
        var cancelledBeforeStart: UInt64?
        /// A cancel request on its way to the server. The next statement waits until it
        /// has landed; otherwise it could be the one interrupted.
        var delivering = false
        var waitingForDelivery: [CheckedContinuation<Void, Never>] = []
    }

    /// The server process serving this connection (`pg_backend_pid()`).
    public let backendPID: Int32
    let logger: Logger

    private init(handle: OpaquePointer, threadPool: NIOThreadPool, ownsThreadPool: Bool, logger: Logger) {
        self.handle = handle
        self.ownsThreadPool = ownsThreadPool
        self.cancelHandle = PQgetCancel(handle)
        self.threadPool = threadPool
        self.logger = logger
        self.backendPID = PQbackendPID(handle)
        self.noticeSink = NoticeSink(logger: logger)
        PQsetNoticeProcessor(handle, { context, message in
            guard let context, let message else { return }
            Unmanaged<NoticeSink>.fromOpaque(context).takeUnretainedValue().receive(String(cString: message))
        }, Unmanaged.passUnretained(noticeSink).toOpaque())
    }

    deinit {
        if !closed.load(ordering: .acquiring) {
            SocketReactor.shared.forget(PQsocket(handle))
            PQfinish(handle)
        }
        if let cancelHandle { PQfreeCancel(cancelHandle) }
        if ownsThreadPool { threadPool.shutdownGracefully { _ in } }
    }

    /// Opens a connection and prepares its session: UTC, ISO dates, UTF-8.
    ///
    /// With `ownsThreadPool`, the connection shuts `threadPool` down when it closes: for a
    /// dedicated connection (LISTEN) with a thread of its own.
    public static func connect(
        configuration: Configuration, threadPool: NIOThreadPool, ownsThreadPool: Bool = false, logger: Logger
    ) async throws -> PostgresConnection {
        let connection = try await threadPool.runBlocking { () throws(PostgresError) -> PostgresConnection in
            // Later keywords override earlier ones, and the URL expands in place of `dbname`:
            // so the URL may override the timeout, and our application_name overrides the URL's.
            // TCP keepalives notice a peer that vanished without closing (a half-open
            // connection); they do not apply to Unix sockets.
            let keywords = [
                "connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
                "gssencmode", "dbname", "application_name", "client_encoding",
            ]
            let values = [
                String(configuration.connectTimeoutSeconds), "1", "30", "10", "3", "disable", configuration.url,
                configuration.applicationName, "UTF8",
            ]
            let handle = withCStringArray(keywords) { keywords in
                withCStringArray(values) { values in
                    PQconnectdbParams(keywords, values, 1)
                }
            }
            guard let handle else {
                throw PostgresError(code: .connectionFailed, message: "libpq could not allocate a connection")
            }
            guard PQstatus(handle) == CONNECTION_OK else {
                let message = String(cString: PQerrorMessage(handle)).trimmingCharacters(in: .whitespacesAndNewlines)
                PQfinish(handle)
                throw PostgresError(code: .connectionFailed, message: message)
            }
            // GSSAPI encryption keeps decrypted bytes inside libpq where no socket readiness
            // shows them, and libpq offers no way to ask (as OpenSSL's `SSL_pending` does
            // for TLS): waiting on the socket could then wait forever. Refused outright.
            guard PQgssEncInUse(handle) == 0 else {
                PQfinish(handle)
                throw PostgresError(
                    code: .connectionFailed,
                    message: "GSSAPI encryption is not supported; use TLS (sslmode) and gssencmode=disable")
            }
            // Statements go through `SocketReactor` and must never block the caller's thread.
            // (`PQexec`, for `simpleQuery`, blocks whatever this says; it runs on the pool.)
            guard PQsetnonblocking(handle, 1) == 0 else {
                let message = String(cString: PQerrorMessage(handle))
                PQfinish(handle)
                throw PostgresError(code: .connectionFailed, message: message)
            }
            return PostgresConnection(handle: handle, threadPool: threadPool, ownsThreadPool: ownsThreadPool, logger: logger)
        }
        do {
            try await connection.simpleQuery(
                "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 3")
        } catch {
            await connection.close()
            throw error
        }
        return connection
    }

    /// Runs one parameterised statement and returns its rows.
    ///
    /// Cancelling the calling task cancels the statement on the server (`PQcancel`).
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> PostgresRows {
        try await cancellably { () async throws(PostgresError) in try await self.execute(query) }
    }

    /// Sends `queries` in one round trip (libpq's pipeline mode) and returns each one's rows,
    /// in order. Statements not inside their own `BEGIN … COMMIT` form one implicit
    /// transaction; the first error stops the rest, which are not run, and is thrown.
    ///
    /// One round trip instead of one per statement: on a short request, each saved round
    /// trip is a network exchange and a wake-up.
    public func pipeline(_ queries: [PostgresQuery]) async throws -> [PostgresRows] {
        try await cancellably { () async throws(PostgresError) in try await self.executePipeline(queries) }
    }

    /// Runs `work`; cancelling the calling task cancels what runs on the server
    /// (`PQcancel`), or, if it has not started yet, keeps it from starting. Work that has
    /// started runs to its end, reading every result, so the connection is left clean.
    /// (Transaction control is never cancellable: `control(_:)`.)
    private func cancellably<Result: Sendable>(
        _ work: () async throws(PostgresError) -> Result
    ) async throws -> Result {
        try Task.checkCancellation()
        let ticket = nextTicket.wrappingAdd(1, ordering: .relaxed).newValue
        return try await withTaskCancellationHandler { () async throws(PostgresError) -> Result in
            while true {
                let started = try self.inFlight.withLock { state throws(PostgresError) -> Bool in
                    if state.cancelledBeforeStart == ticket {
                        throw PostgresError(code: .server, sqlState: PostgresError.SQLState.queryCanceled, message: "cancelled before it started")
                    }
                    guard !state.delivering else { return false }
                    state.running = ticket
                    return true
                }
                if started { break }
                await self.cancelDelivered()
            }
            defer { self.inFlight.withLock { $0.running = nil } }
            return try await work()
        } onCancel: {
            self.cancel(ticket: ticket)
        }
    }

    /// Runs transaction control (`BEGIN` with its settings, `COMMIT`, `ROLLBACK`) as one
    /// pipeline: without blocking a thread, like any statement, but whatever the calling
    /// task's cancellation, since the end of an open transaction must never be skipped. A
    /// cancel request still on its way to the server is waited for first, so it cannot
    /// land on these.
    func control(_ statements: [PostgresQuery]) async throws(PostgresError) {
        await cancelDelivered()
        _ = try await executePipeline(statements)
    }

    /// Ends the transaction open on this connection, discarding its work. Not cancellable.
    public func rollback() async throws {
        try await control(["ROLLBACK"])
    }

    /// Suspends until no cancel request is on its way to the server, if one is: what is
    /// sent next must not be what it stops. (Returns at once in the usual case.)
    private func cancelDelivered() async {
        guard inFlight.withLock({ $0.delivering }) else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let landed = self.inFlight.withLock { state -> Bool in
                guard state.delivering else { return true }
                state.waitingForDelivery.append(continuation)
                return false
            }
            if landed { continuation.resume() }
        }
    }

    /// Runs a script of one or more statements without parameters, for trusted SQL such as
    /// migrations. Values never go here: use `query(_:)`.
    public func simpleQuery(_ script: String) async throws {
        await cancelDelivered()
        use.enter("a script")
        defer { use.leave() }
        try await threadPool.runBlocking { () throws(PostgresError) in
            guard !script.utf8.contains(0) else {
                throw PostgresError(code: .encoding, message: "the script contains a NUL character")
            }
            let result = PQexec(self.handle, script)
            defer { PQclear(result) }
            _ = try self.check(result, sql: script)
        }
    }

    /// Closes the connection. Safe to call more than once.
    public func close() async {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        SocketReactor.shared.forget(PQsocket(handle))
        do {
            try await threadPool.runBlocking { PQfinish(self.handle) }
        } catch {
            // The thread pool is already shut down: finish here. PQfinish only sends a
            // Terminate message and closes the socket, so it does not wait on the server.
            PQfinish(handle)
        }
        if ownsThreadPool { try? await threadPool.shutdownGracefully() }
    }

    /// Whether the connection can go back to a pool: open, and not inside a transaction.
    /// Reads libpq's local state only, so it does not block.
    public var isReusable: Bool {
        !closed.load(ordering: .acquiring) && !poisoned.load(ordering: .acquiring) && PQstatus(handle) == CONNECTION_OK
            && PQtransactionStatus(handle) == PQTRANS_IDLE
    }

    /// Whether the connection still looks alive, without a round trip: if the server said
    /// something while we were not asking (typically `FATAL: terminating connection` before
    /// closing the socket, after `pg_terminate_backend` or a server shutdown), read it now.
    ///
    /// Does not block: `poll` with a zero timeout, and `PQconsumeInput` only when data is
    /// already waiting, so it may run on any thread.
    public func looksAlive() -> Bool {
        guard !closed.load(ordering: .acquiring), PQstatus(handle) == CONNECTION_OK else { return false }
        // The goodbye comes in two parts, the error message and then end-of-file; a read
        // may see only the first, so read while there is more (bounded, in case of a
        // server that keeps talking).
        for _ in 0..<4 {
            var descriptor = pollfd(fd: PQsocket(handle), events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, 0)
            if ready < 0 { return false }
            if ready == 0 { break }
            if descriptor.revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 && descriptor.revents & Int16(POLLIN) == 0 {
                return false
            }
            if PQconsumeInput(handle) == 0 { return false }
        }
        return PQstatus(handle) == CONNECTION_OK
    }

    // MARK: - LISTEN / NOTIFY

    /// Subscribes this connection to `channel`. Use a dedicated connection for listening:
    /// notifications are only read while waiting in `notifications(timeout:)`.
    public func listen(_ channel: String) async throws {
        let sql = try await threadPool.runBlocking { () throws(PostgresError) -> String in
            guard let escaped = PQescapeIdentifier(self.handle, channel, channel.utf8.count) else {
                throw PostgresError(code: .encoding, message: "invalid channel name")
            }
            defer { PQfreemem(escaped) }
            return "LISTEN " + String(cString: escaped)
        }
        try await simpleQuery(sql)
    }

    /// Waits up to `timeout` for notifications and returns those that arrived (maybe none).
    public func notifications(timeout: Duration) async throws -> [PostgresNotification] {
        use.enter("a wait for notifications")
        defer { use.leave() }
        let milliseconds = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        return try await threadPool.runBlocking { () throws(PostgresError) -> [PostgresNotification] in
            var received = self.drainNotifications()
            if !received.isEmpty { return received }
            var descriptor = pollfd(fd: PQsocket(self.handle), events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, milliseconds)
            if ready > 0 {
                guard PQconsumeInput(self.handle) != 0 else {
                    throw PostgresError(code: .connectionClosed, message: String(cString: PQerrorMessage(self.handle)))
                }
            }
            received = self.drainNotifications()
            guard PQstatus(self.handle) == CONNECTION_OK else {
                throw PostgresError(code: .connectionClosed, message: String(cString: PQerrorMessage(self.handle)))
            }
            return received
        }
    }

    private func drainNotifications() -> [PostgresNotification] {
        var received: [PostgresNotification] = []
        while let notify = PQnotifies(handle) {
            let value = notify.pointee
            received.append(
                PostgresNotification(
                    channel: String(cString: value.relname),
                    payload: value.extra.map { String(cString: $0) } ?? "",
                    senderPID: value.be_pid))
            PQfreemem(notify)
        }
        return received
    }

    // MARK: - Internals

    private func execute(_ query: PostgresQuery) async throws(PostgresError) -> PostgresRows {
        let outsideTransaction = PQtransactionStatus(handle) == PQTRANS_IDLE
        do {
            return try await executePipeline([query])[0]
        } catch let error where error.isStalePreparedStatement && outsideTransaction {
            // The statement ran in a transaction of its own, which the error rolled back:
            // running it again, prepared afresh, is what the caller asked for.
            return try await executePipeline([query])[0]
        }
    }

    /// What was sent, in order, so the results can be read back against it.
    private enum Step {
        case prepare(sql: String, name: String)
        case run(PostgresQuery)
    }

    /// Sends `queries` and a single sync, then reads every result. A statement seen before
    /// on this connection runs as the statement prepared then; a new one is prepared in the
    /// same round trip (`PreparedStatements`).
    ///
    /// The socket is non-blocking: every libpq call here returns at once, and waiting for
    /// the server is a suspension on `SocketReactor`, which holds no thread.
    private func executePipeline(_ queries: [PostgresQuery]) async throws(PostgresError) -> [PostgresRows] {
        guard !queries.isEmpty else { return [] }
        use.enter("a statement")
        defer { use.leave() }
        guard !poisoned.load(ordering: .acquiring) else {
            throw PostgresError(code: .connectionClosed, message: "the connection was left unusable by an earlier failure")
        }
        // Refused here, before anything is sent: were libpq to refuse one statement, the
        // ones queued before it would still be synced, and commit, as an implicit transaction.
        for query in queries {
            if query.bindings.count > Self.maximumParameters {
                throw PostgresError(
                    code: .encoding, message: "\(query.bindings.count) parameters; the protocol allows \(Self.maximumParameters)",
                    query: query.sql)
            }
            if query.sql.utf8.contains(0) || query.bindings.contains(where: { $0?.utf8.contains(0) == true }) {
                throw PostgresError(code: .encoding, message: "a query or parameter contains a NUL character", query: query.sql)
            }
        }
        guard PQenterPipelineMode(handle) == 1 else { throw failure(nil) }
        let (steps, allSent) = send(queries)
        let synced = PQpipelineSync(handle) == 1
        var reading = synced
        var firstError: PostgresError?
        if reading {
            do throws(PostgresError) { try await flush() } catch {
                firstError = error
                reading = false
            }
        }
        // Read everything that was sent, even after an error, so the connection leaves
        // pipeline mode clean.
        var rows: [PostgresRows] = []
        rows.reserveCapacity(queries.count)
        for step in steps {
            var result: OpaquePointer?
            if reading {
                do throws(PostgresError) { result = try await nextResult() } catch {
                    firstError = firstError ?? error
                    reading = false
                }
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
                    } catch {
                        if error.isStalePreparedStatement { statements.forget(query.sql) }
                        firstError = firstError ?? error
                    }
                }
            }
            guard let result else {
                if reading { firstError = firstError ?? failure(nil) }
                reading = false
                continue
            }
            PQclear(result)
            // Each statement's results end with a NULL.
            do throws(PostgresError) {
                while let extra = try await nextResult() { PQclear(extra) }
            } catch {
                firstError = firstError ?? error
                reading = false
            }
        }
        // The sync's own result.
        if reading, PQstatus(handle) == CONNECTION_OK {
            do throws(PostgresError) {
                if let sync = try await nextResult() { PQclear(sync) }
            } catch {
                firstError = firstError ?? error
            }
        }
        if firstError == nil, !(allSent && synced) {
            firstError = failure(queries[min(rows.count, queries.count - 1)].sql)
        }
        // A connection that cannot leave pipeline mode is of no further use: `PQexec`
        // refuses to run in it, and a new pipeline would read this one's leftovers.
        if PQexitPipelineMode(handle) != 1 {
            poisoned.store(true, ordering: .releasing)
            firstError = firstError ?? failure(nil)
        }
        if let firstError { throw firstError }
        return rows
    }

    /// Queues `queries` in libpq's output buffer (no waiting: the socket is non-blocking),
    /// preparing the ones this connection has not seen.
    private func send(_ queries: [PostgresQuery]) -> (steps: [Step], allSent: Bool) {
        var steps: [Step] = []
        steps.reserveCapacity(queries.count * 2)
        for query in queries {
            let count = Int32(query.bindings.count)
            var name: String?
            switch query.isPreparable ? statements.plan(for: query.sql) : .unnamed {
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
    private func flush() async throws(PostgresError) {
        while true {
            switch PQflush(handle) {
            case 0: return
            case 1:
                // Take in what the server sent meanwhile, so it never waits on us to read.
                guard PQconsumeInput(handle) == 1 else { throw failure(nil) }
                await SocketReactor.shared.wait(for: PQsocket(handle), .readableOrWritable)
            default: throw failure(nil)
            }
        }
    }

    /// The next result, waiting for the server until libpq has a whole one.
    private func nextResult() async throws(PostgresError) -> OpaquePointer? {
        while PQisBusy(handle) == 1 {
            if clibpq_tls_read_pending(handle) == 0 {
                await SocketReactor.shared.wait(for: PQsocket(handle), .readable)
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

    private func failure(_ sql: String?) -> PostgresError {
        PostgresError(
            code: PQstatus(handle) == CONNECTION_OK ? .protocolViolation : .connectionClosed,
            message: String(cString: PQerrorMessage(handle)), query: sql)
    }

    /// Turns a libpq result into rows or a `PostgresError`.
    private func check(_ result: OpaquePointer?, sql: String) throws(PostgresError) -> OpaquePointer {
        guard let result else { throw failure(sql) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return result
        case PGRES_FATAL_ERROR, PGRES_NONFATAL_ERROR, PGRES_BAD_RESPONSE:
            func field(_ code: Character) -> String? {
                PQresultErrorField(result, Int32(code.asciiValue!)).map { String(cString: $0) }
            }
            let broken = PQstatus(handle) != CONNECTION_OK
            var error = PostgresError(
                code: broken ? .connectionClosed : .server,
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

    /// Asks the server to stop the statement `ticket`, from a thread of its own:
    /// `PQcancel` opens a connection and waits for the server, and the caller is whatever
    /// thread cancelled the task (often one of the cooperative pool's). Nothing waits on
    /// that thread but the connection's next statement, which suspends until it is done.
    private func cancel(ticket: UInt64) {
        guard cancelHandle != nil else { return }
        let deliver = inFlight.withLock { state -> Bool in
            guard state.running == ticket else {
                state.cancelledBeforeStart = ticket
                return false
            }
            guard !state.delivering else { return false }
            state.delivering = true
            return true
        }
        guard deliver else { return }
        Thread.detachNewThread {
            var buffer = [CChar](repeating: 0, count: 256)
            _ = PQcancel(self.cancelHandle, &buffer, Int32(buffer.count))
            let waiting = self.inFlight.withLock { state in
                state.delivering = false
                defer { state.waitingForDelivery = [] }
                return state.waitingForDelivery
            }
            for continuation in waiting { continuation.resume() }
        }
    }
}

/// A `NOTIFY` received on a listening connection.
public struct PostgresNotification: Sendable, Hashable {
    public var channel: String
    public var payload: String
    public var senderPID: Int32
}

/// Receives the server's notices and warnings (which libpq would otherwise print to stderr)
/// and logs them.
private final class NoticeSink: Sendable {
    let logger: Logger
    init(logger: Logger) { self.logger = logger }
    func receive(_ message: String) {
        logger.debug("postgres notice", metadata: ["notice": "\(message.trimmingCharacters(in: .whitespacesAndNewlines))"])
    }
}

/// Calls `body` with a C array of C strings (`NULL` entries for `nil`), valid only inside it.
/// The array is followed by one more `NULL`, which `PQconnectdbParams` needs as terminator
/// and `PQsendQueryParams` ignores.
private func withCStringArray<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let duplicated: [UnsafeMutablePointer<CChar>?] = strings.map { $0.flatMap { strdup($0) } } + [nil]
    defer { duplicated.forEach { free($0) } }
    let pointers = duplicated.map { UnsafePointer($0) }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

private func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    withCStringArray(strings.map { Optional($0) }, body)
}

extension NIOThreadPool {
    /// Runs blocking work on the pool. Unlike `runIfActive`, work already submitted runs even
    /// if the calling task is cancelled: a `PQfinish` or a migration must not be skipped.
    func runBlocking<T: Sendable>(_ body: @escaping @Sendable () throws(PostgresError) -> T) async throws(PostgresError) -> T {
        let result: Result<T, PostgresError> = await withCheckedContinuation { continuation in
            self.submit { state in
                switch state {
                case .active:
                    continuation.resume(returning: Result { () throws(PostgresError) -> T in try body() })
                case .cancelled:
                    continuation.resume(returning: .failure(PostgresError(code: .poolShutDown, message: "thread pool is shut down")))
                }
            }
        }
        return try result.get()
    }
}
