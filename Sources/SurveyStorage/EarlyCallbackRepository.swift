import Foundation
import Postgres
import SurveyDomain

/// What the provider told us before the worker recorded the send: a delivery status for a
/// message id not yet known, a reply to a request still `queued`. The API keeps them
/// (`early_delivery_statuses`, `early_replies`); the worker (role `survey_worker`) applies
/// them here once the send is recorded, so nothing the provider said is lost. Applying is
/// idempotent and runs on a schedule, so it does not matter which of the send's record and
/// the callback committed first.
public struct EarlyCallbackRepository: Sendable {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// Applies what can be applied now; returns how many statuses and replies were applied.
    @discardableResult
    public func apply() async throws -> (statuses: Int, replies: Int) {
        let statuses = try await database.client.withConnection { connection in
            try await connection.query(
                """
                WITH due AS (
                    DELETE FROM early_delivery_statuses AS e USING provider_messages AS p
                     WHERE p.provider_message_id = e.provider_message_id
                    RETURNING p.company_id, p.request_id, e.status, e.received_at
                ), updated AS (
                    UPDATE survey_requests AS r
                       SET status = CASE WHEN due.status = 'delivered' THEN 'delivered' ELSE 'failed' END,
                           delivered_at = CASE WHEN due.status = 'delivered' THEN due.received_at ELSE r.delivered_at END,
                           failure = CASE WHEN due.status = 'delivered' THEN r.failure ELSE 'undelivered' END,
                           failed_at = CASE WHEN due.status = 'delivered' THEN r.failed_at ELSE due.received_at END
                      FROM due
                     WHERE r.company_id = due.company_id AND r.request_id = due.request_id
                       AND ((due.status = 'delivered' AND r.status = 'sent')
                            OR (due.status = 'failed' AND r.status IN ('sent', 'delivered') AND r.score IS NULL))
                    RETURNING r.company_id, r.request_id, r.destination_hash, r.status
                ), freed AS (
                    -- An undelivered survey no longer holds its number.
                    DELETE FROM open_surveys AS o USING updated AS u
                     WHERE u.status = 'failed' AND o.destination_hash = u.destination_hash
                       AND o.company_id = u.company_id AND o.request_id = u.request_id
                )
                SELECT count(*)::int FROM updated
                """
            ).one().decode(Int.self)
        }
        let replies = try await database.client.withConnection { connection in
            try await connection.query(
                """
                WITH due AS (
                    -- Every kept reply whose request has left the queue: applied below if it
                    -- was sent, dropped if it failed.
                    DELETE FROM early_replies AS e USING survey_requests AS r
                     WHERE r.company_id = e.company_id AND r.request_id = e.request_id AND r.status <> 'queued'
                    RETURNING e.company_id, e.request_id, e.score, e.received_at, r.status
                ), applicable AS (
                    SELECT company_id, request_id,
                           (array_agg(score ORDER BY received_at) FILTER (WHERE score IS NOT NULL))[1] AS score,
                           min(received_at) FILTER (WHERE score IS NOT NULL) AS responded_at,
                           array_agg(received_at) FILTER (WHERE score IS NULL) AS bad_at
                      FROM due
                     WHERE status IN ('sent', 'delivered')
                     GROUP BY company_id, request_id
                ), updated AS (
                    -- As if each had come after the send: the first good answer is the score,
                    -- and bad replies before it count.
                    UPDATE survey_requests AS r
                       SET score = a.score, responded_at = a.responded_at,
                           bad_replies = r.bad_replies + coalesce(
                               (SELECT count(*)::int FROM unnest(a.bad_at) AS b(at) WHERE a.responded_at IS NULL OR b.at < a.responded_at), 0)
                      FROM applicable AS a
                     WHERE r.company_id = a.company_id AND r.request_id = a.request_id AND r.score IS NULL
                    RETURNING r.company_id, r.request_id, r.destination_hash, r.score
                ), freed AS (
                    DELETE FROM open_surveys AS o USING updated AS u
                     WHERE u.score IS NOT NULL AND o.destination_hash = u.destination_hash
                       AND o.company_id = u.company_id AND o.request_id = u.request_id
                )
                SELECT count(*)::int FROM updated
                """
            ).one().decode(Int.self)
        }
        return (statuses, replies)
    }
}
