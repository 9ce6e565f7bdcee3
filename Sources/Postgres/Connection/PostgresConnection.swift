import CLibPQ
import Foundation
import Logging
import NIOPosix
import Synchronization

/// One connection to PostgreSQL through libpq.
///
/// Statements run on a non-blocking socket: the caller sends, suspends while the server
/// works, and is resumed by `SocketReactor`, or given up at a deadline. The libpq calls
/// that block (connecting, bounded by `connect_timeout`, and closing) run on the injected
/// `NIOThreadPool`. None runs on an event loop or
/// on Swift's cooperative pool.
///
/// `@unchecked Sendable`: the `PGconn` is not thread-safe, and it is used by one holder at a
/// time. A pool leases a connection to exactly one task, whose calls run one after another
/// (each awaits the previous), wherever each resumes. The one call that comes from another
/// thread, `PQcancel`, is documented by libpq as safe for that and uses its own `PGcancel`
/// object; `inFlight` (a mutex) makes sure it only hits the statement it is for.
public final class PostgresConnection: @unchecked Sendable {
    public struct Configuration: Sendable {
        /// A libpq connection URI or `key=value` string. It may name several hosts
        /// (`postgresql://h1:5432,h2:5432/db?target_session_attrs=read-write`): libpq tries
        /// them in turn, and a new connection finds the primary after a failover.
        public var url: String
        /// Shown in `pg_stat_activity.application_name`; overrides one in `url`.
        public var applicationName: String
        /// Seconds to wait for the server when connecting (per host), unless `url` says otherwise.
        public var connectTimeoutSeconds: Int
        /// How long sent data may go unacknowledged before the kernel gives the connection
        /// up (`tcp_user_timeout`), unless `url` says otherwise. With the keepalives, it is
        /// what ends an idle connection to a server that vanished (a LISTEN connection).
        public var tcpUserTimeout: Duration
        /// The longest a statement waits for the server's answer. Past it the connection is
        /// abandoned and the statement fails with `timedOut`: a partitioned network or a
        /// stopped server must not hold the caller forever. Set it above the server's
        /// `statement_timeout`, which ends slow statements first, cleanly.
        public var responseTimeout: Duration
        /// The longest `BEGIN`, `COMMIT` or `ROLLBACK` waits, whatever the caller's deadline:
        /// a commit sent just before it still learns whether it committed.
        public var transactionControlTimeout: Duration
        /// The longest the next statement waits for a cancel request to reach the server
        /// (`PQcancel` opens a connection of its own, and can block). Past it, the
        /// connection is abandoned: the late cancel could stop a later statement.
        public var cancelTimeout: Duration

        public init(
            url: String, applicationName: String, connectTimeoutSeconds: Int = 5, tcpUserTimeout: Duration = .seconds(15),
            responseTimeout: Duration = .seconds(60), transactionControlTimeout: Duration = .seconds(5),
            cancelTimeout: Duration = .seconds(2)
        ) {
            self.url = url
            self.applicationName = applicationName
            self.connectTimeoutSeconds = connectTimeoutSeconds
            self.tcpUserTimeout = tcpUserTimeout
            self.responseTimeout = responseTimeout
            self.transactionControlTimeout = transactionControlTimeout
            self.cancelTimeout = cancelTimeout
        }
    }

    let handle: OpaquePointer
    let cancelHandle: OpaquePointer?
    let threadPool: NIOThreadPool
    private let noticeSink: NoticeSink
    let inFlight = Mutex(CancelState())
    /// Every call into libpq that talks on the connection goes through it: a second task
    /// using the connection at the same time stops the program instead of racing libpq.
    let use = ExclusiveUse()
    let nextTicket = Atomic<UInt64>(0)
    private let closed = Atomic<Bool>(false)
    /// Set when libpq was left in a state this client cannot use again (stuck in pipeline
    /// mode, or in a COPY): the pool then closes the connection instead of reusing it.
    let poisoned = Atomic<Bool>(false)
    /// Set for connections that own their thread pool (dedicated ones), shut down on close.
    private let ownsThreadPool: Bool
    /// Only touched by the one holder's calls, which run one after another.
    var statements = PreparedStatements(capacity: 256)
    /// The holder's deadline (a request's), set by the pool for the length of a lease:
    /// statements wait for the server until then at most. Only touched by the holder.
    var deadline: ContinuousClock.Instant?
    let timeouts: Timeouts

    struct Timeouts {
        var response: Duration
        var transactionControl: Duration
        var cancel: Duration
    }

    /// What cancellation needs to know, so that a cancel request only ever interrupts the
    /// statement it was made for.
    struct CancelState {
        /// The statement running now, if any.
        var running: UInt64?
        /// A statement cancelled before it started: it never starts.
        var cancelledBeforeStart: UInt64?
        /// A cancel request on its way to the server. The next statement waits until it
        /// has landed; otherwise it could be the one interrupted.
        var delivering = false
        /// Counts cancel requests, so that the end of one is never taken for another's.
        var deliveries: UInt64 = 0
        var waitingForDelivery: [CheckedContinuation<Void, Never>] = []
    }

    /// The server process serving this connection (`pg_backend_pid()`).
    public let backendPID: Int32
    let logger: Logger

    private init(handle: OpaquePointer, configuration: Configuration, threadPool: NIOThreadPool, ownsThreadPool: Bool, logger: Logger) {
        self.handle = handle
        self.timeouts = Timeouts(
            response: configuration.responseTimeout, transactionControl: configuration.transactionControlTimeout,
            cancel: configuration.cancelTimeout)
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
            // TCP keepalives and the user timeout notice a peer that vanished without
            // closing (a half-open connection) within about half a minute; they do not
            // apply to Unix sockets.
            let keywords = [
                "connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
                "tcp_user_timeout", "gssencmode", "dbname", "application_name", "client_encoding",
            ]
            let values = [
                String(configuration.connectTimeoutSeconds), "1", "10", "5", "3",
                String(configuration.tcpUserTimeout.nanoseconds / 1_000_000), "disable", configuration.url,
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
            guard PQsetnonblocking(handle, 1) == 0 else {
                let message = String(cString: PQerrorMessage(handle))
                PQfinish(handle)
                throw PostgresError(code: .connectionFailed, message: message)
            }
            return PostgresConnection(
                handle: handle, configuration: configuration, threadPool: threadPool, ownsThreadPool: ownsThreadPool, logger: logger)
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
    /// Cancelling the calling task cancels the statement on the server (`PQcancel`). The
    /// answer is waited for until the holder's deadline or the response timeout, whichever
    /// comes first; past it the statement fails with `timedOut` and the connection is abandoned.
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> PostgresRows {
        try await cancellably { () async throws(PostgresError) in try await self.execute(query, until: try self.statementBound()) }
    }

    /// Sends `queries` in one round trip (libpq's pipeline mode) and returns each one's rows,
    /// in order. Statements not inside their own `BEGIN … COMMIT` form one implicit
    /// transaction; the first error stops the rest, which are not run, and is thrown.
    ///
    /// One round trip instead of one per statement: on a short request, each saved round
    /// trip is a network exchange and a wake-up.
    public func pipeline(_ queries: [PostgresQuery]) async throws -> [PostgresRows] {
        try await cancellably { () async throws(PostgresError) in try await self.executePipeline(queries, until: try self.statementBound()) }
    }

    /// When the answer to a statement sent now must have come: the holder's deadline or
    /// the response timeout, whichever is sooner. A deadline already past sends nothing.
    func statementBound() throws(PostgresError) -> ContinuousClock.Instant {
        let now = ContinuousClock.now
        let bound = now.advanced(by: timeouts.response)
        guard let deadline else { return bound }
        guard deadline > now else {
            throw PostgresError(code: .timedOut, message: "the caller's deadline passed before the statement was sent")
        }
        return min(bound, deadline)
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

    /// The connection's socket (for tests that look at its options).
    var socket: Int32 { PQsocket(handle) }

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
func withCStringArray<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let duplicated: [UnsafeMutablePointer<CChar>?] = strings.map { $0.flatMap { strdup($0) } } + [nil]
    defer { duplicated.forEach { free($0) } }
    let pointers = duplicated.map { UnsafePointer($0) }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    withCStringArray(strings.map { Optional($0) }, body)
}
