// Transactions on one connection: `BEGIN` with its settings, `COMMIT` and `ROLLBACK`, and the
// isolation levels a transaction may ask for.

public enum IsolationLevel: String, Sendable {
    case readCommitted = "READ COMMITTED"
    case repeatableRead = "REPEATABLE READ"
    case serializable = "SERIALIZABLE"

    /// One of three fixed texts, so kept prepared like a literal.
    var begin: PostgresQuery {
        self == .readCommitted ? "BEGIN" : PostgresQuery(unsafeSQL: "BEGIN ISOLATION LEVEL \(rawValue)", preparable: true)
    }
}

extension PostgresConnection {
    /// Runs transaction control (`BEGIN` with its settings, `COMMIT`, `ROLLBACK`) as one
    /// pipeline: without blocking a thread, like any statement, but whatever the calling
    /// task's cancellation or deadline, since the end of an open transaction must never be
    /// skipped; bounded by the transaction control timeout instead. A cancel request still
    /// on its way to the server is waited for first, so it cannot land on these.
    func control(_ statements: [PostgresQuery]) async throws(PostgresError) {
        await cancelDelivered()
        let bound = ContinuousClock.now.advanced(by: min(timeouts.transactionControl, timeouts.response))
        _ = try await executePipeline(statements, until: bound)
    }

    /// Ends the transaction open on this connection, discarding its work. Not cancellable.
    public func rollback() async throws {
        try await control(["ROLLBACK"])
    }

    /// Runs `body` in a transaction on this connection: committed if it returns, rolled back
    /// if it throws (including on cancellation).
    ///
    /// `prelude` is statements for the start of the transaction (settings such as `SET LOCAL`),
    /// sent in the same round trip as `BEGIN`: on a short transaction, each round trip saved
    /// is a network exchange and a wake-up.
    @discardableResult
    public func withTransaction<Result>(
        isolation: IsolationLevel = .readCommitted, prelude: [PostgresQuery] = [],
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await begin(isolation: isolation, prelude: prelude)
        let result = try await rollingBackOnError(body)
        try await commit()
        return result
    }

    /// `BEGIN` and the prelude, in one round trip; rolled back if the prelude fails.
    func begin(isolation: IsolationLevel, prelude: [PostgresQuery]) async throws {
        do {
            try await control([isolation.begin] + prelude)
        } catch {
            // The prelude failed inside the transaction BEGIN opened.
            try? await rollback()
            throw error
        }
    }

    /// `body`, rolled back if it throws; the caller commits.
    func rollingBackOnError<Result>(_ body: (PostgresConnection) async throws -> Result) async throws -> Result {
        do {
            return try await body(self)
        } catch {
            // If the rollback itself fails the connection is left in a transaction, and the
            // pool closes it on release rather than reuse it.
            try? await rollback()
            throw error
        }
    }

    func commit() async throws {
        try await control(["COMMIT"])
    }
}
