/// An error from the database or from the client around it.
///
/// `description` is safe to show to anyone: it names the kind of failure and the SQLSTATE,
/// never the SQL, the server's message or the values involved. `debugDescription` tells all,
/// for logs that only operators read.
public struct PostgresError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// An extensible set of failure kinds, in the style of `PostgresError.Code` in postgres-nio.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Sendable {
            case connectionFailed, connectionClosed, server, decoding, encoding
            case poolTimeout, poolExhausted, poolUnavailable, poolShutDown
            case protocolViolation, timedOut, notPrimary, connectionAbandoned
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A connection could not be opened (server down, bad credentials, bad URL).
        public static let connectionFailed = Code(.connectionFailed)
        /// The connection broke while in use.
        public static let connectionClosed = Code(.connectionClosed)
        /// The server answered with an error; see `sqlState`.
        public static let server = Code(.server)
        /// A value in a result could not be decoded into the Swift type asked for.
        public static let decoding = Code(.decoding)
        /// A value could not be encoded as a query parameter.
        public static let encoding = Code(.encoding)
        /// No connection became free within the pool's wait timeout.
        public static let poolTimeout = Code(.poolTimeout)
        /// The pool's wait queue is full.
        public static let poolExhausted = Code(.poolExhausted)
        /// The database is unreachable and the pool is backing off before trying again.
        public static let poolUnavailable = Code(.poolUnavailable)
        /// The pool was shut down.
        public static let poolShutDown = Code(.poolShutDown)
        /// The server answered something this client did not expect.
        public static let protocolViolation = Code(.protocolViolation)
        /// Out of time: the caller's deadline passed before the statement was sent (nothing
        /// sent, the connection kept), or the server did not answer by the caller's deadline
        /// or the connection's own limits (a partition, a stopped server, a statement blocked
        /// on a lock): the connection was then abandoned, and whether the statement ran is
        /// unknown.
        public static let timedOut = Code(.timedOut)
        /// A write reached a server that takes none (SQLSTATE 25006 from a hot standby, or
        /// from a primary made read-only while a failover manager demotes it): the primary
        /// has moved, or the URL names a standby.
        public static let notPrimary = Code(.notPrimary)
        /// The connection had been given up by an earlier failure on it (a timeout, a cancel
        /// request that never arrived); nothing was sent, and another connection may succeed.
        public static let connectionAbandoned = Code(.connectionAbandoned)

        public var description: String { base.rawValue }
    }

    public var code: Code
    /// The five-character SQLSTATE, for `.server` errors (e.g. `23505` for a unique violation).
    public var sqlState: String?
    /// The server's or libpq's message. Never part of `description`.
    public var message: String?
    public var detail: String?
    public var hint: String?
    /// The constraint a `23xxx` error is about, as reported by the server.
    public var constraint: String?
    /// The SQL text, when the error came from running one. Never part of `description`.
    public var query: String?
    /// The server function that raised it (libpq's `PG_DIAG_SOURCE_FUNCTION`): for telling
    /// errors apart where the SQLSTATE is shared and the message may be translated.
    var routine: String?
    /// For `timedOut`: the server was silent past the connection's own limits (the response
    /// or the transaction control timeout), not merely past the caller's deadline, which a
    /// healthy server blocked on a lock can also miss.
    var unresponsive = false

    public init(
        code: Code, sqlState: String? = nil, message: String? = nil, detail: String? = nil,
        hint: String? = nil, constraint: String? = nil, query: String? = nil
    ) {
        self.code = code
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.hint = hint
        self.constraint = constraint
        self.query = query
    }

    public var description: String {
        if let sqlState { return "PostgresError(code: \(code), sqlState: \(sqlState))" }
        return "PostgresError(code: \(code))"
    }

    public var debugDescription: String {
        var parts = ["code: \(code)"]
        if let sqlState { parts.append("sqlState: \(sqlState)") }
        if let message { parts.append("message: \(message)") }
        if let detail { parts.append("detail: \(detail)") }
        if let hint { parts.append("hint: \(hint)") }
        if let constraint { parts.append("constraint: \(constraint)") }
        if let query { parts.append("query: \(query)") }
        return "PostgresError(\(parts.joined(separator: ", ")))"
    }
}

extension PostgresError {
    /// Well-known SQLSTATE values the layers above branch on.
    public enum SQLState {
        public static let uniqueViolation = "23505"
        public static let foreignKeyViolation = "23503"
        public static let checkViolation = "23514"
        public static let insufficientPrivilege = "42501"
        public static let queryCanceled = "57014"
        public static let adminShutdown = "57P01"
        public static let serializationFailure = "40001"
        public static let deadlockDetected = "40P01"
        public static let featureNotSupported = "0A000"
        public static let invalidStatementName = "26000"
        public static let protocolViolation = "08P01"
        public static let readOnlySQLTransaction = "25006"
    }

    /// Whether a prepared statement can no longer run as prepared: its plan no longer fits
    /// the tables (the server replans most changes by itself, but not a column whose type
    /// changed under a statement's result: 0A000 from `RevalidateCachedQuery`), or the
    /// server no longer has it (26000: a `DEALLOCATE` or `DISCARD ALL` behind our back).
    /// Told apart by the server's function name, which unlike the message is never translated.
    public var isStalePreparedStatement: Bool {
        (sqlState == SQLState.featureNotSupported && routine == "RevalidateCachedQuery")
            || sqlState == SQLState.invalidStatementName
    }

    /// Whether the connection this came from is gone (closed, its backend terminated or
    /// the server shutting down): another connection may well succeed.
    public var isConnectionLost: Bool {
        if code == .connectionClosed || code == .connectionAbandoned { return true }
        guard let sqlState else { return false }
        // Class 08 (connection exception) but not 08P01: the server also reports a
        // statement's wrong parameter count as a protocol violation, on a connection that
        // is fine. 57P0x: operator intervention (shutdown, crash).
        return (sqlState.hasPrefix("08") && sqlState != SQLState.protocolViolation) || sqlState.hasPrefix("57P")
    }

    /// Whether the server the connection reached is gone, unresponsive or no longer the
    /// primary, so that the pool's other connections to it are no better: not a caller's
    /// deadline passed, nor a connection given up for its own earlier failure.
    var saysServerChanged: Bool {
        switch code {
        case .notPrimary: true
        case .timedOut: unresponsive
        case .connectionAbandoned: false
        default: isConnectionLost
        }
    }

    /// Whether the database itself is unreachable, silent, going away or not the primary
    /// (a failover under way), as opposed to refusing a statement: the answer a caller
    /// gives for these is "try again later" (HTTP 503).
    public var isUnavailable: Bool {
        switch code {
        case .connectionFailed, .poolTimeout, .poolExhausted, .poolUnavailable, .poolShutDown, .timedOut, .notPrimary,
            .connectionAbandoned:
            return true
        default:
            return isConnectionLost
        }
    }
}
