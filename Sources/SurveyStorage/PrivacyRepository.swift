import Foundation
import Postgres
import SurveyDomain

/// What a company does for its customers' privacy: its own suppression list (numbers it
/// must never survey, kept as keyed hashes only), and erasing a customer's requests by the
/// company's own reference for them.
public struct PrivacyRepository: Sendable {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// Adds a number to the company's suppression list; already there is fine.
    public func suppress(_ hash: Data, company: CompanyID) async throws {
        try await database.withTenant(company) { connection in
            try await connection.query(
                "INSERT INTO company_opt_outs (company_id, destination_hash) VALUES (\(company), \(hash)) ON CONFLICT DO NOTHING")
        }
    }

    /// Removes a number from the list; false if it was not on it.
    public func unsuppress(_ hash: Data, company: CompanyID) async throws -> Bool {
        try await database.withTenant(company) { connection in
            try await connection.query(
                "DELETE FROM company_opt_outs WHERE company_id = \(company) AND destination_hash = \(hash)"
            ).affectedRows > 0
        }
    }

    /// Unlinks every request of the company with this `referenceID`, in one transaction:
    /// those not yet handed to the provider are cancelled (reason `erased`: the person
    /// asked to be forgotten, so no survey may reach them now), and every one loses its
    /// `referenceId` and segments. The stored replays of send calls lose the reference
    /// too: `replayedMember` is the exact `"referenceId":"…"` member the API wrote in them,
    /// replaced by `"referenceId":null` so a replay stays byte for byte the same otherwise.
    /// Returns how many requests were unlinked. Reports keep their numbers: aggregates are
    /// not personal data (the erased requests count under no segment from now on).
    public func erase(referenceID: String, replayedMember: String, company: CompanyID) async throws -> Int {
        // Requests, then jobs, then numbers: a reply or the scheduler may come the other
        // way, so a deadlock is possible; the transaction runs again.
        try await Database.retryingConflicts {
            try await eraseOnce(referenceID: referenceID, replayedMember: replayedMember, company: company)
        }
    }

    private func eraseOnce(referenceID: String, replayedMember: String, company: CompanyID) async throws -> Int {
        try await database.withTenant(company) { connection in
            let requests = try await connection.query(
                """
                SELECT request_id FROM survey_requests
                 WHERE company_id = \(company) AND reference_id = \(referenceID)
                 ORDER BY request_id
                   FOR UPDATE
                """
            ).map { try $0.decode(Int64.self) }
            // The stored answers of send calls may hold it even if no request does (every
            // item with it was skipped).
            try await connection.query(
                """
                UPDATE idempotency_keys SET body = replace(body, \(replayedMember), '"referenceId":null')
                 WHERE company_id = \(company) AND strpos(body, \(replayedMember)) > 0
                """)
            guard !requests.isEmpty else { return 0 }
            // Jobs no worker holds: withdrawn, as a cancel would.
            let withdrawn = try await connection.query(
                """
                DELETE FROM sms_jobs
                 WHERE company_id = \(company) AND request_id = ANY(\(requests)::bigint[]) AND leased_until IS NULL
                RETURNING request_id, destination_hash
                """
            ).map { try $0.decode((Int64, Data).self) }.sorted { $0.1.lexicographicallyPrecedes($1.1) }
            if !withdrawn.isEmpty {
                try await connection.query(
                    """
                    WITH cancelled AS (
                        UPDATE survey_requests
                           SET status = 'cancelled', failure = 'erased', cancelled_at = now()
                         WHERE company_id = \(company) AND request_id = ANY(\(withdrawn.map(\.0))::bigint[]) AND status = 'queued'
                        RETURNING (created_at AT TIME ZONE 'UTC')::date AS day, channel
                    )
                    UPDATE daily_sms_usage AS u
                       SET queued = greatest(u.queued - c.sms, 0), emails_queued = greatest(u.emails_queued - c.emails, 0),
                           calls_queued = greatest(u.calls_queued - c.calls, 0)
                      FROM (SELECT day, count(*) FILTER (WHERE channel = 'SMS')::int AS sms,
                                   count(*) FILTER (WHERE channel = 'EMAIL')::int AS emails,
                                   count(*) FILTER (WHERE channel = 'VOICE')::int AS calls
                              FROM cancelled GROUP BY day) AS c
                     WHERE u.company_id = \(company) AND u.day = c.day
                    """)
                try await connection.query(
                    "SELECT release_open_surveys(\(withdrawn.map(\.1))::bytea[], \(withdrawn.map(\.0))::bigint[])")
            }
            try await connection.query(
                """
                UPDATE survey_requests SET reference_id = NULL, segments = '{}'
                 WHERE company_id = \(company) AND request_id = ANY(\(requests)::bigint[])
                """)
            // Webhook events carry the reference and segments too: those not yet delivered
            // are not sent, and the log of those that were forgets them.
            try await connection.query(
                "DELETE FROM webhook_events WHERE company_id = \(company) AND request_id = ANY(\(requests)::bigint[])")
            return requests.count
        }
    }
}
