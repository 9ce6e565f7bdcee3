import Foundation
import Postgres
import SurveyDomain

/// Scheduled jobs falling due, as the worker's scheduler (role `survey_worker`) sees them:
/// each is admitted to the queue (its number's slot claimed, as a send call claims it) or
/// cancelled with the send rule that no longer holds, or, inside its company's quiet
/// hours, put back until they end.
public struct SchedulerRepository: Sendable {
    let database: Database
    let policy: SendingPolicy

    public init(database: Database, policy: SendingPolicy) {
        self.database = database
        self.policy = policy
    }

    /// What one pass did.
    public struct Admission: Sendable, Equatable {
        public var admitted = 0
        public var postponed = 0
        /// By reason (`opted-out`, `recently-surveyed`, `destination-busy`).
        public var cancelled: [String: Int] = [:]
        /// Jobs looked at: a full batch means more may be due.
        public var examined = 0

        public init() {}
    }

    /// Admits, cancels or postpones up to `limit` due jobs, in one transaction. Jobs are
    /// read through the index of waiting jobs by due time, so those not yet due are never
    /// touched; concurrent schedulers skip each other's jobs.
    public func admitDue(limit: Int = 1000, now: @Sendable () -> Date = { Date() }) async throws -> Admission {
        try await database.client.withTransaction { connection in
            let due = try await connection.query(
                """
                SELECT j.company_id, j.job_id, j.request_id, j.destination_hash,
                       to_char(c.quiet_hours_start, 'HH24:MI'), to_char(c.quiet_hours_end, 'HH24:MI'), c.time_zone
                  FROM sms_jobs AS j JOIN companies AS c ON c.company_id = j.company_id
                 WHERE j.needs_admission AND j.run_at <= now()
                 ORDER BY j.run_at
                 LIMIT \(limit)
                   FOR UPDATE OF j SKIP LOCKED
                """
            ).map { row in
                let (company, job, request, hash, quietStart, quietEnd, zone) = try row.decode(
                    (Int64, Int64, Int64, Data, String?, String?, String).self)
                return DueJob(
                    company: company, job: job, request: request, hash: hash,
                    schedule: CompanySettings(quietHours: CompanyRepository.quietHours(quietStart, quietEnd), timeZone: zone).schedule)
            }
            var result = Admission()
            result.examined = due.count
            guard !due.isEmpty else { return result }

            // Quiet hours now (they may have changed since the call): wait for their end.
            let instant = now()
            var postponed: [(DueJob, Date)] = []
            var ready: [DueJob] = []
            for job in due {
                let allowed = job.schedule.dueTime(sendAt: nil, now: instant)
                if allowed > instant { postponed.append((job, allowed)) } else { ready.append(job) }
            }
            if !postponed.isEmpty {
                try await connection.query(
                    """
                    WITH t AS (
                        SELECT * FROM unnest(\(postponed.map(\.0.company))::bigint[], \(postponed.map(\.0.job))::bigint[],
                                             \(postponed.map(\.0.request))::bigint[], \(postponed.map(\.1))::timestamptz[])
                               AS t(company_id, job_id, request_id, due)
                    ), jobs AS (
                        UPDATE sms_jobs AS j SET run_at = t.due, due_at = t.due
                          FROM t WHERE j.company_id = t.company_id AND j.job_id = t.job_id
                    )
                    UPDATE survey_requests AS r SET scheduled_for = t.due
                      FROM t WHERE r.company_id = t.company_id AND r.request_id = t.request_id
                    """)
                result.postponed = postponed.count
            }
            guard !ready.isEmpty else { return result }

            // The rules again, as a send call applies them now. Slots are claimed in hash
            // order, as everywhere, so the scheduler cannot deadlock with a send call.
            let sorted = ready.sorted { $0.hash.lexicographicallyPrecedes($1.hash) }
            let (optedOut, recent) = try await connection.query(
                """
                SELECT ARRAY(SELECT t.request_id
                               FROM unnest(\(sorted.map(\.company))::bigint[], \(sorted.map(\.request))::bigint[],
                                           \(sorted.map(\.hash))::bytea[]) AS t(company_id, request_id, hash)
                              WHERE EXISTS (SELECT 1 FROM opt_outs AS o WHERE o.destination_hash = t.hash)
                                 OR EXISTS (SELECT 1 FROM company_opt_outs AS c
                                             WHERE c.company_id = t.company_id AND c.destination_hash = t.hash)),
                       ARRAY(SELECT t.request_id
                               FROM unnest(\(sorted.map(\.company))::bigint[], \(sorted.map(\.request))::bigint[],
                                           \(sorted.map(\.hash))::bytea[]) AS t(company_id, request_id, hash)
                               JOIN companies AS c ON c.company_id = t.company_id
                              WHERE EXISTS (
                                    SELECT 1 FROM survey_requests AS r
                                     WHERE r.company_id = t.company_id AND r.destination_hash = t.hash
                                       AND r.request_id <> t.request_id
                                       AND coalesce(r.sent_at, r.scheduled_for, r.created_at)
                                           > now() - make_interval(days => c.resurvey_days)
                                       AND (r.status NOT IN ('failed', 'cancelled') OR r.failure = 'uncertain')
                                       -- Another request still waiting to be admitted does
                                       -- not count: both would cancel each other. The
                                       -- first admitted holds the number; the other finds
                                       -- it busy.
                                       AND NOT EXISTS (
                                           SELECT 1 FROM sms_jobs AS w
                                            WHERE w.company_id = r.company_id AND w.request_id = r.request_id AND w.needs_admission)))
                """
            ).one().decode(([Int64], [Int64]).self)
            let optedOutSet = Set(optedOut)
            let recentSet = Set(recent)
            var reasons: [Int64: SkipReason] = [:]
            var candidates: [DueJob] = []
            for job in sorted {
                if optedOutSet.contains(job.request) {
                    reasons[job.request] = .optedOut
                } else if recentSet.contains(job.request) {
                    reasons[job.request] = .recentlySurveyed
                } else if candidates.last?.hash == job.hash {
                    // Two due for one number (two companies, or two calls racing): one
                    // statement cannot claim a slot twice, and only one may have it.
                    reasons[job.request] = .destinationBusy
                } else {
                    candidates.append(job)
                }
            }
            let slotSeconds = Int((policy.maximumJobAge + policy.responseWindow).components.seconds)
            let claimed: Set<Int64> = Set(
                try await connection.query(
                    """
                    INSERT INTO open_surveys AS o (destination_hash, company_id, request_id, expires_at)
                    SELECT hash, company_id, request_id, now() + make_interval(secs => \(slotSeconds))
                      FROM unnest(\(candidates.map(\.hash))::bytea[], \(candidates.map(\.company))::bigint[],
                                  \(candidates.map(\.request))::bigint[]) WITH ORDINALITY AS t(hash, company_id, request_id, position)
                     ORDER BY position
                    ON CONFLICT (destination_hash) DO UPDATE
                       SET company_id = EXCLUDED.company_id, request_id = EXCLUDED.request_id, expires_at = EXCLUDED.expires_at
                     WHERE o.expires_at <= now()
                    RETURNING o.request_id
                    """
                ).map { try $0.decode(Int64.self) })
            for job in candidates where !claimed.contains(job.request) { reasons[job.request] = .destinationBusy }
            let admitted = candidates.filter { claimed.contains($0.request) }

            if !admitted.isEmpty {
                // Due from now: its maximum age counts from here. Workers are told at commit.
                try await connection.query(
                    """
                    WITH admitted AS (
                        UPDATE sms_jobs AS j SET needs_admission = false, run_at = now(), due_at = now()
                          FROM unnest(\(admitted.map(\.company))::bigint[], \(admitted.map(\.job))::bigint[]) AS t(company_id, job_id)
                         WHERE j.company_id = t.company_id AND j.job_id = t.job_id
                    )
                    SELECT pg_notify(\(SendRepository.notificationChannel), '')
                    """)
                result.admitted = admitted.count
            }
            let cancelled = sorted.filter { reasons[$0.request] != nil }
            if !cancelled.isEmpty {
                try await cancel(cancelled, reasons: cancelled.map { reasons[$0.request]!.rawValue }, on: connection)
                for job in cancelled { result.cancelled[reasons[job.request]!.rawValue, default: 0] += 1 }
            }
            return result
        }
    }

    /// A job whose rule no longer holds: gone, its request cancelled with the rule as the
    /// reason, its message no longer counted against the day it was queued on.
    private func cancel(_ jobs: [DueJob], reasons: [String], on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            WITH t AS (
                SELECT * FROM unnest(\(jobs.map(\.company))::bigint[], \(jobs.map(\.job))::bigint[],
                                     \(jobs.map(\.request))::bigint[], \(reasons)::text[])
                       AS t(company_id, job_id, request_id, reason)
            ), jobs AS (
                DELETE FROM sms_jobs AS j USING t WHERE j.company_id = t.company_id AND j.job_id = t.job_id
            ), requests AS (
                UPDATE survey_requests AS r
                   SET status = 'cancelled', failure = t.reason, cancelled_at = now()
                  FROM t
                 WHERE r.company_id = t.company_id AND r.request_id = t.request_id AND r.status = 'queued'
                RETURNING r.company_id, (r.created_at AT TIME ZONE 'UTC')::date AS day, r.channel
            )
            UPDATE daily_sms_usage AS u
               SET queued = greatest(u.queued - c.sms, 0), emails_queued = greatest(u.emails_queued - c.emails, 0),
                           calls_queued = greatest(u.calls_queued - c.calls, 0)
              FROM (SELECT company_id, day, count(*) FILTER (WHERE channel = 'SMS')::int AS sms,
                           count(*) FILTER (WHERE channel = 'EMAIL')::int AS emails,
                                   count(*) FILTER (WHERE channel = 'VOICE')::int AS calls
                      FROM requests GROUP BY 1, 2) AS c
             WHERE u.company_id = c.company_id AND u.day = c.day
            """)
    }

    struct DueJob {
        var company: Int64
        var job: Int64
        var request: Int64
        var hash: Data
        var schedule: SendSchedule
    }
}
