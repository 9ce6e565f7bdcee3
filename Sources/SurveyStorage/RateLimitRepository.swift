import Postgres

/// The token buckets every `serve` replica shares (`rate_limit_buckets`).
public struct RateLimitRepository: Sendable {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// Takes up to `wanted` tokens from the bucket `key`, refilled at `rate` per second up
    /// to `burst`. With none granted, `retryAfter` is when the next one will be there.
    public func take(
        _ wanted: Int, from key: String, rate: Double, burst: Int
    ) async throws -> (granted: Int, retryAfter: Duration) {
        try await database.client.withConnection(deadline: RequestDeadline.current) { connection in
            let (granted, seconds) = try await connection.query(
                """
                SELECT granted, retry_after
                  FROM take_rate_limit_tokens(\(key), \(rate)::float8, \(Double(burst))::float8, \(wanted))
                """
            ).one().decode((Int, Double).self)
            return (granted, .milliseconds(Int64((max(0, seconds) * 1000).rounded(.up))))
        }
    }

    /// Forgets buckets untouched for `age`: they would have refilled to full anyway.
    @discardableResult
    public func purge(olderThan age: Duration) async throws -> Int {
        try await database.client.withConnection { connection in
            try await connection.query(
                """
                DELETE FROM rate_limit_buckets
                 WHERE refreshed_at < now() - make_interval(secs => \(Double(age.components.seconds)))
                """
            ).affectedRows
        }
    }
}
