import Foundation
import Postgres
import SurveyDomain

/// A company's survey requests one at a time, as a filtered list, and as a whole period
/// for export; and cancelling one that has not reached the provider.
public struct RequestRepository: Sendable {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// Rows per statement of an export (keyset pages of `list`): large enough that a
    /// statement's fixed cost vanishes, small enough that memory stays flat whatever the
    /// period.
    public static let exportChunk = 5_000

    public func find(_ id: RequestID, company: CompanyID) async throws -> RequestRecord? {
        try await database.read(
            company,
            """
            SELECT \(fragment: Self.columns) FROM survey_requests AS r
             WHERE r.company_id = \(company) AND r.request_id = \(id)
            """
        ).single.map(Self.record)
    }

    /// Up to `limit` requests that `filter` admits, after `after` in `order`.
    public func list(
        _ filter: RequestFilter, order: RequestOrder, after: RequestID?, limit: Int, company: CompanyID
    ) async throws -> [RequestRecord] {
        try await database.read(company, Self.listQuery(filter, order: order, after: after, limit: limit, company: company))
            .map(Self.record)
    }

    /// Cancels a request that no worker has claimed: its job goes, its number's slot is
    /// freed and its message no longer counts against the day's cap, in one transaction.
    /// Throws `StorageError.notFound`, or `RequestNotCancellable` with where it stands.
    public func cancel(_ id: RequestID, company: CompanyID) async throws {
        // The request row first, then its job, then its number: a reply and the scheduler
        // come from the other ends, so a deadlock is possible; the transaction runs again.
        try await Database.retryingConflicts { try await cancelOnce(id, company: company) }
    }

    private func cancelOnce(_ id: RequestID, company: CompanyID) async throws {
        try await database.withTenant(company) { connection in
            // The request's row first, locked: a concurrent cancel or a worker's record of
            // this request waits for this transaction, then sees the outcome.
            guard
                let row = try await connection.query(
                    """
                    SELECT \(fragment: Self.columns) FROM survey_requests AS r
                     WHERE r.company_id = \(company) AND r.request_id = \(id)
                       FOR UPDATE
                    """
                ).single
            else { throw StorageError.notFound }
            let request = try Self.record(row)
            guard request.status == .queued || request.status == .scheduled else {
                throw RequestNotCancellable(status: request.status)
            }
            // Queued again for another call after one nobody answered: that call was placed
            // (and counted); the request runs its course.
            guard request.sentAt == nil else { throw RequestNotCancellable(status: request.status, callPlaced: true) }
            // A claimed job is being handed over (or is about to be): too late. The claim
            // locks jobs before it leases them, so a job it holds is not deleted here.
            let job = try await connection.query(
                """
                DELETE FROM sms_jobs
                 WHERE company_id = \(company) AND request_id = \(id) AND leased_until IS NULL
                RETURNING destination_hash
                """
            ).single
            guard let job else { throw RequestNotCancellable(status: request.status, handingOver: true) }
            let hash = try job.decode(Data.self)
            try await connection.query(
                """
                UPDATE survey_requests SET status = 'cancelled', failure = NULL, cancelled_at = now()
                 WHERE company_id = \(company) AND request_id = \(id)
                """)
            try await connection.query("SELECT release_open_surveys(\([hash])::bytea[], \([id.rawValue])::bigint[])")
            // The message was counted on the day it was queued (UTC, as the cap's days are).
            try await connection.query(
                """
                UPDATE daily_sms_usage
                   SET queued = greatest(queued - \(request.channel == .sms ? 1 : 0), 0),
                       emails_queued = greatest(emails_queued - \(request.channel == .email ? 1 : 0), 0),
                       calls_queued = greatest(calls_queued - \(request.channel == .voice ? 1 : 0), 0)
                 WHERE company_id = \(company) AND day = (\(request.createdAt)::timestamptz AT TIME ZONE 'UTC')::date
                """)
        }
    }

    // MARK: - SQL

    /// What a company sees of a request, in `record(_:)`'s order. The API's status is
    /// derived: a score means `responded` whatever came before; a queued request not yet
    /// due is `scheduled`; a sent one past its response window without a score is `expired`.
    static let columns: StaticString = """
        r.request_id, r.survey_id, r.reference_id, r.channel, r.language, r.segments,
        CASE WHEN r.score IS NOT NULL THEN 'responded'
             WHEN r.status IN ('failed', 'cancelled') THEN r.status
             WHEN r.status = 'queued' AND r.scheduled_for > now() THEN 'scheduled'
             WHEN r.status = 'queued' THEN 'queued'
             WHEN r.respond_by <= now() THEN 'expired'
             ELSE r.status END AS status,
        CASE WHEN r.status IN ('failed', 'cancelled') AND r.score IS NULL THEN r.failure END AS failure_reason,
        r.score, r.bad_replies, r.created_at, r.scheduled_for, r.sent_at, r.delivered_at, r.responded_at, r.respond_by
        """

    static func listQuery(
        _ filter: RequestFilter, order: RequestOrder, after: RequestID?, limit: Int, company: CompanyID
    ) -> PostgresQuery {
        // One text per order for every combination of filters (a NULL parameter disables
        // its condition). Planned on each run, never prepared: a prepared statement's
        // generic plan cannot drop the disabled conditions, so after five runs PostgreSQL
        // would read the whole period through the creation-time index and sort it, for
        // each chunk of an export (0.5 s instead of 4 ms). Planned with the values, the
        // primary key serves the keyset condition and the ORDER BY in either direction
        // (the inner query is flattened: the status filter reads the derived column).
        let segments = filter.segments.isEmpty ? nil : filter.segments
        let all = filter.segmentMode == .all
        let newest = order == .newest
        // Always a bound, so the keyset condition is a plain range on the primary key.
        let bound = after?.rawValue ?? (newest ? Int64.max : 0)
        var query: PostgresQuery = """
            SELECT * FROM (
                SELECT \(fragment: columns) FROM survey_requests AS r
                 WHERE r.company_id = \(company)
                   AND r.created_at >= \(filter.period.lowerBound) AND r.created_at < \(filter.period.upperBound)
                   AND (\(filter.survey)::bigint IS NULL OR r.survey_id = \(filter.survey))
                   AND (\(filter.referenceID)::text IS NULL OR r.reference_id = \(filter.referenceID))
                   AND (\(filter.channel?.rawValue)::text IS NULL OR r.channel = \(filter.channel?.rawValue))
                   AND (\(segments)::text[] IS NULL
                        OR (CASE WHEN \(all) THEN r.segments @> \(segments) ELSE r.segments && \(segments) END))
                   AND r.request_id \(fragment: newest ? "<" : ">") \(bound)
            ) AS x
             WHERE (\(filter.status?.rawValue)::text IS NULL OR x.status = \(filter.status?.rawValue))
             ORDER BY x.request_id \(fragment: newest ? "DESC" : "ASC") LIMIT \(limit)
            """
        query.isPreparable = false
        return query
    }

    static func record(_ row: PostgresRow) throws -> RequestRecord {
        let (id, survey, reference, channel, language, segments, status, failure, score, bad, created, scheduled, sent, delivered, responded, respondBy) =
            try row.decode(
                (RequestID, SurveyID, String?, String, String?, [String], String, String?, Int?, Int, Date, Date?, Date?, Date?, Date?, Date?).self)
        guard let channel = Channel(rawValue: channel), let status = RequestStatus(rawValue: status) else {
            throw PostgresError(code: .decoding, message: "unknown channel \(channel) or status \(status)")
        }
        return RequestRecord(
            id: id, survey: survey, referenceID: reference, channel: channel, language: language, segments: segments,
            status: status, failureReason: failure, score: score, badResponses: bad, createdAt: created,
            scheduledFor: scheduled, sentAt: sent, deliveredAt: delivered, respondedAt: responded, respondBy: respondBy)
    }
}
