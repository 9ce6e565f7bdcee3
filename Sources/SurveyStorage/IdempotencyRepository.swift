import Foundation
import Postgres
import SurveyDomain

/// `Idempotency-Key` for calls that create things: the key is claimed, and the first
/// response stored, in the transaction that does the work; the response is replayed for 24
/// hours. Every statement runs on the caller's connection, so this holds no database.
public struct IdempotencyRepository: Sendable {
    /// How long a key is remembered.
    public static let retention = 24 * 3600
    /// How long a claim without a response holds before it is presumed dead.
    public static let claimSeconds = 120

    public init() {}

    public enum Claim: Equatable, Sendable {
        /// First use (or an expired one): go ahead, then `store` the response.
        case proceed
        /// Seen before with the same request: answer this again.
        case replay(status: Int, body: String)
        /// Seen before with another request.
        case mismatch
        /// A claim without a response that has not run out: only a claim committed apart from
        /// its work leaves one (as versions before the claim joined the work's transaction did).
        case inProgress
    }

    /// Claims `key` for a request whose fingerprint is `requestHash`, in the transaction
    /// (on `connection`) that then does the work and stores the response.
    ///
    /// In that one transaction, a claim can never outlive the work: if the work fails, or
    /// the database goes away before it commits (a failover), the claim goes with it, and
    /// the client's retry with the same key proceeds. (A claim committed on its own, and
    /// released after a failure, was left behind whenever the release could not reach the
    /// database either: the retries got 409 for the claim's two minutes.) A concurrent
    /// request with the same key waits on the uncommitted row, then replays the response.
    public func claim(
        _ key: String, requestHash: Data, company: CompanyID, on connection: PostgresConnection
    ) async throws -> Claim {
        // Keys past their 24 hours are forgotten (their fingerprints with them), a few at a
        // time and only those no other send is forgetting: this runs in the send's
        // transaction, whose row locks last until it commits, and two sends of one company
        // must not queue behind each other for it.
        try await connection.query(
            """
            DELETE FROM idempotency_keys
             WHERE ctid IN (SELECT ctid FROM idempotency_keys
                             WHERE company_id = \(company) AND created_at < now() - make_interval(secs => \(Self.retention))
                               AND key <> \(key)
                             LIMIT 100 FOR UPDATE SKIP LOCKED)
            """)
        let claimed = try await connection.query(
            """
            INSERT INTO idempotency_keys (company_id, key, request_hash, locked_until)
            VALUES (\(company), \(key), \(requestHash), now() + make_interval(secs => \(Self.claimSeconds)))
            ON CONFLICT (company_id, key) DO UPDATE
               SET request_hash = EXCLUDED.request_hash, locked_until = EXCLUDED.locked_until,
                   status = NULL, body = NULL, created_at = now()
             WHERE idempotency_keys.created_at < now() - make_interval(secs => \(Self.retention))
                OR (idempotency_keys.status IS NULL AND idempotency_keys.locked_until < now())
            RETURNING 1
            """)
        if !claimed.isEmpty { return .proceed }
        let row = try await connection.query(
            "SELECT request_hash, status, body FROM idempotency_keys WHERE company_id = \(company) AND key = \(key)"
        ).one()
        let (storedHash, status, body) = try row.decode((Data, Int?, String?).self)
        guard storedHash == requestHash else { return .mismatch }
        guard let status, let body else { return .inProgress }
        return .replay(status: status, body: body)
    }

    /// Stores the response for a claimed key, on the connection (and so in the transaction)
    /// that did the work.
    public func store(_ key: String, status: Int, body: String, company: CompanyID, on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            UPDATE idempotency_keys SET status = \(status), body = \(body), locked_until = NULL
             WHERE company_id = \(company) AND key = \(key)
            """)
    }
}
