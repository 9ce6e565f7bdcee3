import Foundation
import Postgres
import SurveyDomain

/// The SMS job queue, as the worker (role `survey_worker`) sees it: claim a batch with a
/// lease, mark windows of it as started, record outcomes (`QueueRepository+Recording`),
/// and give up on jobs whose lease ran out (their outcome is unknown, so they are never
/// sent again).
public struct QueueRepository: Sendable {
    let database: Database
    let policy: SendingPolicy

    public init(database: Database, policy: SendingPolicy) {
        self.database = database
        self.policy = policy
    }

    /// How long a placed call's job waits for the call's final status.
    static let callLeaseSeconds = 3600

    public struct Job: Sendable, Equatable {
        public var channel: Channel
        public var company: CompanyID
        public var id: Int64
        public var request: RequestID
        public var destinationHash: Data
        /// The raw E.164 number or e-mail address; it exists only while the job does.
        public var destination: String
        /// The question, as the survey words it in the request's language.
        public var body: String
        /// The request's language tag, if it gave one (the words around the question).
        public var language: String?
        /// The score links' token (e-mail); like the destination, only while the job exists.
        public var responseToken: String?
        /// Whose survey it is, as the e-mail's subject says.
        public var companyName: String
        /// Including the one this claim starts.
        public var attempts: Int
        /// When it fell due (its maximum age, and its retries', count from here).
        public var dueAt: Date
        /// The number replied STOP, or its company suppressed it, since the job was queued:
        /// it must not be sent.
        public var optedOut: Bool
        /// The claim that holds it; the worker's writes to the job require it.
        public var leaseID: String
        /// Its place in the claim, from 1: jobs are started in this order.
        public var position: Int
    }

    public enum Outcome: Sendable, Equatable {
        /// `segments`: what an SMS was billed as; `nil` on other channels.
        case sent(providerMessageID: String, segments: Int?)
        /// Final: the request fails with this reason (`permanent`, `uncertain`, `opted-out`,
        /// `retries-exhausted`).
        case failed(reason: String)
        case retry(after: Duration)
        /// Not attempted (the worker is stopping): back to the queue as it was.
        case release
    }

    /// Claims up to `limit` admitted jobs that are due (never one waiting for its time: the
    /// scheduler admits those), marking them leased in a commit of their own,
    /// before any is sent; each says whether its number opted out meanwhile. They come in
    /// claim order (`position`), the order they must be started in.
    public func claim(_ channel: Channel = .sms, limit: Int, lease: Duration) async throws -> [Job] {
        let leaseID = UUID().uuidString
        // One statement, so its own transaction: committed (durably) when it returns.
        return try await database.client.withConnection { connection in
            try await connection.query(
                """
                WITH due AS (
                    SELECT company_id, job_id, row_number() OVER (ORDER BY run_at, job_id) AS position FROM (
                        SELECT company_id, job_id, run_at FROM sms_jobs
                         WHERE channel = \(channel.rawValue) AND leased_until IS NULL AND NOT needs_admission AND run_at <= now()
                           AND due_at > now() - make_interval(secs => \(Int(policy.maximumJobAge.components.seconds)))
                         ORDER BY run_at
                         LIMIT \(limit)
                         FOR UPDATE SKIP LOCKED) AS locked
                ), claim AS (
                    INSERT INTO sms_claims (lease_id) SELECT \(leaseID) WHERE EXISTS (SELECT 1 FROM due)
                )
                UPDATE sms_jobs AS j
                   SET leased_until = now() + make_interval(secs => \(Int(lease.components.seconds))), attempts = j.attempts + 1,
                       lease_id = \(leaseID), claim_position = due.position
                  FROM due
                 WHERE j.company_id = due.company_id AND j.job_id = due.job_id
                RETURNING j.company_id, j.job_id, j.request_id, j.destination_hash, j.destination, j.body, j.attempts, j.due_at,
                          EXISTS (SELECT 1 FROM opt_outs AS o WHERE o.destination_hash = j.destination_hash)
                          OR EXISTS (SELECT 1 FROM company_opt_outs AS c
                                      WHERE c.company_id = j.company_id AND c.destination_hash = j.destination_hash),
                          due.position, j.language, j.response_token,
                          (SELECT c.name FROM companies AS c WHERE c.company_id = j.company_id)
                """
            ).map { row in
                let (company, id, request, hash, destination, body, attempts, dueAt, optedOut, position, language, token, name) =
                    try row.decode((CompanyID, Int64, RequestID, Data, String, String, Int, Date, Bool, Int, String?, String?, String).self)
                return Job(
                    channel: channel, company: company, id: id, request: request, destinationHash: hash, destination: destination,
                    body: body, language: language, responseToken: token, companyName: name, attempts: attempts, dueAt: dueAt,
                    optedOut: optedOut, leaseID: leaseID, position: position)
            }.sorted { $0.position < $1.position }
        }
    }

    /// What a mark found: whether the claim is still the worker's (if not, the reaper took
    /// it back and nothing of the window may be sent), and which of the window's numbers
    /// opted out meanwhile (to fail without a call).
    public struct Marked: Sendable, Equatable {
        public var claimHeld = false
        public var optedOut: Set<Int64> = []
    }

    /// Marks jobs as started, just before their provider calls (committed when it
    /// returns): from then on, a worker that dies leaves them `uncertain`; before, they go
    /// back to the queue. `jobs` is the claim's next window, in claim order; the claim's
    /// row records how far it has started, so no job's row is written. Only a claim the
    /// reaper has not taken back is marked (a worker stalled past its lease must not send
    /// a job another worker may hold now): send nothing unless `claimHeld`.
    public func markStarted(_ jobs: [Job], recheckOptOuts: Bool = true) async throws -> Marked {
        guard !jobs.isEmpty else { return Marked() }
        return try await database.client.withConnection { connection in
            try Self.marked(try await connection.pipeline(Self.markStartedQueries(jobs, recheck: recheckOptOuts)))
        }
    }

    /// The mark, and with `recheck` a fresh look at the window's opt-outs (the claim itself
    /// looked, so within its first second the worker skips the look).
    static func markStartedQueries(_ jobs: [Job], recheck: Bool = true) -> [PostgresQuery] {
        let through = jobs.map(\.position).max() ?? 0
        let mark: PostgresQuery = """
            UPDATE sms_claims SET started_through = greatest(started_through, \(through))
             WHERE lease_id = \(jobs[0].leaseID)
            RETURNING 1
            """
        guard recheck else { return [mark] }
        return [
            mark,
            """
            SELECT j.job_id FROM sms_jobs AS j
             WHERE j.company_id = ANY(\(jobs.map(\.company.rawValue))::bigint[]) AND j.job_id = ANY(\(jobs.map(\.id))::bigint[])
               AND (EXISTS (SELECT 1 FROM opt_outs AS o WHERE o.destination_hash = j.destination_hash)
                    OR EXISTS (SELECT 1 FROM company_opt_outs AS c
                                WHERE c.company_id = j.company_id AND c.destination_hash = j.destination_hash))
            """,
        ]
    }

    static func marked(_ results: some Collection<PostgresRows>) throws -> Marked {
        let rows = Array(results)
        guard let mark = rows.first, !mark.isEmpty else { return Marked() }
        var marked = Marked(claimHeld: true)
        if rows.count > 1 { marked.optedOut = Set(try rows[1].map { try $0.decode(Int64.self) }) }
        return marked
    }

    /// Jobs whose lease ran out: their worker died (or lost the database) between the claim
    /// and the record of their outcome. Those it noted as sent are recorded as sent. Those
    /// it had started sending otherwise may or may not have gone out: they fail as
    /// `uncertain` and are never sent again. Those it never started
    /// go back to the queue as they were. Jobs never claimed within the maximum age fail as
    /// `expired`. Returns how many failed and how many went back.
    @discardableResult
    public func failExpiredLeases() async throws -> (failed: Int, returned: Int) {
        // Noted jobs and then uncertain ones are each locked in number order, but not the
        // two together: a send meeting both can make this transaction a deadlock victim.
        try await Database.retryingConflicts { try await failExpiredLeasesOnce() }
    }

    private func failExpiredLeasesOnce() async throws -> (failed: Int, returned: Int) {
        try await database.client.withTransaction { connection in
            // The claims whose lease ran out, locked: a mark of one waits for this
            // transaction, then finds its claim gone and starts nothing.
            let claims = try await connection.query(
                """
                SELECT lease_id, started_through FROM sms_claims
                 WHERE lease_id IN (SELECT lease_id FROM sms_jobs WHERE leased_until < now() AND lease_id IS NOT NULL)
                 ORDER BY lease_id
                   FOR UPDATE
                """
            ).map { try $0.decode((String, Int).self) }
            // Sent, and noted before the worker died: recorded as sent.
            try await connection.query(Self.applyNotedQuery(claims.map(\.0), windowSeconds: windowSeconds))
            // Never started (marks commit before their calls): back to the queue.
            let returned = try await connection.query(
                """
                UPDATE sms_jobs AS j SET leased_until = NULL, lease_id = NULL, claim_position = NULL, attempts = greatest(j.attempts - 1, 0)
                  FROM unnest(\(claims.map(\.0))::text[], \(claims.map(\.1))::int[]) AS c(lease_id, started_through)
                 WHERE j.lease_id = c.lease_id AND j.leased_until < now() AND j.claim_position > c.started_through
                """
            ).affectedRows
            try await connection.query("DELETE FROM sms_claims WHERE lease_id = ANY(\(claims.map(\.0))::text[])")
            // Leased past the lease, and started (or of a claim with no record of its
            // progress): unknown outcome. Never claimed within the maximum age of falling
            // due (workers down, queue backed up): too late to survey, its slot may be gone
            // (read through the index of due jobs, so jobs waiting for their time cost nothing).
            let expired = try await connection.query(
                """
                DELETE FROM sms_jobs
                 WHERE leased_until < now()
                    OR (leased_until IS NULL AND NOT needs_admission AND run_at <= now()
                        AND due_at < now() - make_interval(secs => \(Int(policy.maximumJobAge.components.seconds))))
                RETURNING company_id, request_id, destination_hash, CASE WHEN leased_until IS NULL THEN 'expired' ELSE 'uncertain' END
                """
            ).map { try $0.decode((Int64, Int64, Data, String).self) }
                .sorted { $0.2.lexicographicallyPrecedes($1.2) }
            guard !expired.isEmpty else { return (0, returned) }
            let companies = expired.map(\.0)
            let requests = expired.map(\.1)
            try await markFailed(companies: companies, requests: requests, reasons: expired.map(\.3), on: connection)
            try await freeDestinations(expired.map(\.2), companies: companies, requests: requests, on: connection)
            return (expired.count, returned)
        }
    }

    /// A claim done with (every job's outcome known, noted or released): what it noted is
    /// recorded in full and its progress row goes, in one commit.
    public func finish(claim leaseID: String) async throws {
        try await database.client.withConnection { connection in
            _ = try await connection.pipeline([
                // The claim first, as the reaper locks it: otherwise each could hold what the
                // other waits for (the notes, the claim) and one would die a deadlock victim.
                "SELECT 1 FROM sms_claims WHERE lease_id = \(leaseID) FOR UPDATE",
                Self.applyNotedQuery([leaseID], windowSeconds: windowSeconds),
                "DELETE FROM sms_claims WHERE lease_id = \(leaseID)",
            ])
        }
    }

    /// How many jobs are due or being sent, and when the longest-waiting due one fell due,
    /// for metrics. Jobs scheduled for later are not the queue's backlog: not counted, and
    /// not read (both counts go through the partial indexes of admitted jobs).
    public func depth() async throws -> (jobs: Int, oldest: Date?) {
        try await database.client.withConnection { connection in
            try await connection.query(
                """
                SELECT (SELECT count(*) FROM sms_jobs WHERE leased_until IS NULL AND NOT needs_admission AND run_at <= now())
                     + (SELECT count(*) FROM sms_jobs WHERE leased_until IS NOT NULL),
                       (SELECT min(run_at) FROM sms_jobs WHERE leased_until IS NULL AND NOT needs_admission AND run_at <= now())
                """
            ).one().decode((Int, Date?).self)
        }
    }

    func deleteJobs(_ jobs: [Job], on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            DELETE FROM sms_jobs AS j
             USING unnest(\(jobs.map(\.company.rawValue))::bigint[], \(jobs.map(\.id))::bigint[]) AS t(company_id, job_id)
             WHERE j.company_id = t.company_id AND j.job_id = t.job_id
            """)
    }

    func markFailed(companies: [Int64], requests: [Int64], reasons: [String], on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            UPDATE survey_requests AS r SET status = 'failed', failure = t.reason, failed_at = now()
              FROM unnest(\(companies)::bigint[], \(requests)::bigint[], \(reasons)::text[]) AS t(company_id, request_id, reason)
             WHERE r.company_id = t.company_id AND r.request_id = t.request_id
               -- A call placed whose end never came (its job held for the call, then reaped):
               -- nobody knows whether anyone answered.
               AND (r.status = 'queued' OR (r.status = 'sent' AND r.channel = 'VOICE'))
            """)
    }

    /// A failed request no longer holds its number.
    func freeDestinations(_ hashes: [Data], companies: [Int64], requests: [Int64], on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            DELETE FROM open_surveys AS o
             USING unnest(\(hashes)::bytea[], \(companies)::bigint[], \(requests)::bigint[]) AS t(hash, company_id, request_id)
             WHERE o.destination_hash = t.hash AND o.company_id = t.company_id AND o.request_id = t.request_id
            """)
    }
}
