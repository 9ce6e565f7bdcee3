import Postgres

/// A database failure as the layers above storage need to see it, without knowing the
/// database: what to tell a client, not which SQLSTATE it was.
public enum StorageFailure: Sendable, Equatable {
    /// The database cannot be reached, or no connection was free in time: worth trying
    /// again a little later (the API answers 503 with `Retry-After`).
    case unavailable
    /// A statement ran out of time: the request's deadline, or the session's own limit
    /// (the API answers 503 `/problems/timeout`). Whether the server stopped it or the
    /// client stopped waiting (a server silent past the deadline) is the same to a client.
    case timedOut

    /// What `error` means, if it is one of these; `nil` for anything else.
    public init?(_ error: any Error) {
        guard let error = error as? PostgresError else { return nil }
        if error.code == .timedOut || error.sqlState == PostgresError.SQLState.queryCanceled {
            self = .timedOut
        } else if error.isUnavailable {
            self = .unavailable
        } else {
            return nil
        }
    }
}
