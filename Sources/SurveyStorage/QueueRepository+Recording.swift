import Foundation
import Postgres
import SurveyDomain

/// Recording outcomes: in full (`complete`), or noted per window and recorded in full per
/// claim (`complete(noting:)`, `applyNoted`).
extension QueueRepository {
    /// Records a batch of outcomes in one transaction: sent and failed jobs leave the queue
    /// (and their numbers with them), retried ones go back with a later `run_at`. Marks
    /// `next` as started in the same transaction (one commit for both, which is what a
    /// window of sends costs the database), as `markStarted` does.
    ///
    /// With `noting`, a batch of SMS that all went out is only noted on the claim (durable,
    /// so a worker killed now loses none of it), to be recorded in full by `applyNoted` or
    /// `finish`: the full record has a fixed cost of milliseconds of the database's CPU,
    /// better paid once a claim than once a window.
    @discardableResult
    public func complete(
        _ outcomes: [(Job, Outcome)], starting next: [Job] = [], recheckOptOuts: Bool = true, noting: Bool = false
    ) async throws -> Marked {
        guard !outcomes.isEmpty else { return try await markStarted(next, recheckOptOuts: recheckOptOuts) }
        var sent: [(Job, String, Int?)] = []
        var failed: [(Job, String)] = []
        var retried: [(Job, Duration)] = []
        var released: [Job] = []
        // Rows of open_surveys are locked in hash order everywhere (sends too), so a batch
        // and a concurrent send can never deadlock.
        let outcomes = outcomes.sorted { $0.0.destinationHash.lexicographicallyPrecedes($1.0.destinationHash) }
        for (job, outcome) in outcomes {
            switch outcome {
            case .sent(let id, let segments): sent.append((job, id, segments))
            case .failed(let reason): failed.append((job, reason))
            case .retry(let delay): retried.append((job, delay))
            case .release: released.append(job)
            }
        }
        if noting, failed.isEmpty, retried.isEmpty, released.isEmpty, sent.allSatisfy({ $0.0.channel == .sms }) {
            return try await note(sent, starting: next, recheckOptOuts: recheckOptOuts)
        }
        if failed.isEmpty, retried.isEmpty, released.isEmpty {
            // The common case: the record and the next window's mark as one pipeline, which
            // is one implicit transaction, one round trip and one commit.
            return try await database.client.withConnection { connection in
                let results = try await connection.pipeline(
                    [Self.recordSentQuery(sent, windowSeconds: windowSeconds)]
                        + (next.isEmpty ? [] : Self.markStartedQueries(next, recheck: recheckOptOuts)))
                return next.isEmpty ? Marked() : try Self.marked(results.dropFirst())
            }
        }
        return try await database.client.withTransaction { connection in
            if !sent.isEmpty { try await connection.query(Self.recordSentQuery(sent, windowSeconds: windowSeconds)) }
            if !failed.isEmpty {
                let companies = failed.map(\.0.company.rawValue)
                let requests = failed.map(\.0.request.rawValue)
                try await deleteJobs(failed.map(\.0), on: connection)
                try await markFailed(companies: companies, requests: requests, reasons: failed.map(\.1), on: connection)
                try await freeDestinations(failed.map(\.0.destinationHash), companies: companies, requests: requests, on: connection)
            }
            if !retried.isEmpty {
                try await connection.query(
                    """
                    UPDATE sms_jobs AS j
                       SET leased_until = NULL, lease_id = NULL, claim_position = NULL, run_at = now() + make_interval(secs => t.delay)
                      FROM unnest(\(retried.map(\.0.company.rawValue))::bigint[], \(retried.map(\.0.id))::bigint[],
                                  \(retried.map(\.1.secondsValue))::float8[],
                                  \(retried.map(\.0.leaseID))::text[])
                           AS t(company_id, job_id, delay, lease_id)
                     WHERE j.company_id = t.company_id AND j.job_id = t.job_id AND j.lease_id = t.lease_id
                    """)
            }
            if !released.isEmpty {
                try await connection.query(
                    """
                    UPDATE sms_jobs AS j
                       SET leased_until = NULL, lease_id = NULL, claim_position = NULL, attempts = greatest(j.attempts - 1, 0)
                      FROM unnest(\(released.map(\.company.rawValue))::bigint[], \(released.map(\.id))::bigint[],
                                  \(released.map(\.leaseID))::text[]) AS t(company_id, job_id, lease_id)
                     WHERE j.company_id = t.company_id AND j.job_id = t.job_id AND j.lease_id = t.lease_id
                    """)
            }
            guard !next.isEmpty else { return Marked() }
            var results: [PostgresRows] = []
            for query in Self.markStartedQueries(next, recheck: recheckOptOuts) { results.append(try await connection.query(query)) }
            return try Self.marked(results)
        }
    }

    /// Notes `sent` on its claim and marks `next`, in one pipeline (one commit). If the
    /// claim is no longer this worker's (the reaper took it back), nothing is noted or
    /// started, and `sent` is recorded in full at once, so the requests the reaper failed
    /// as `uncertain` get the truth.
    private func note(_ sent: [(Job, String, Int?)], starting next: [Job], recheckOptOuts: Bool) async throws -> Marked {
        let (noted, marked) = try await database.client.withConnection { connection in
            let results = try await connection.pipeline(
                [Self.noteSentQuery(sent)] + (next.isEmpty ? [] : Self.markStartedQueries(next, recheck: recheckOptOuts)))
            return (!(results.first?.isEmpty ?? true), next.isEmpty ? Marked() : try Self.marked(results.dropFirst()))
        }
        guard !noted else { return marked }
        try await database.client.withConnection { connection in
            try await connection.query(Self.recordSentQuery(sent, windowSeconds: windowSeconds))
        }
        return Marked()
    }

    /// Records in full what this claim's windows noted (`complete(noting:)`): the worker
    /// does so every few hundred milliseconds and when the claim is done, so requests show
    /// `sent` promptly; the reaper does so for a dead worker's claims.
    public func applyNoted(claim leaseID: String) async throws {
        try await database.client.withConnection { connection in
            try await connection.query(Self.applyNotedQuery([leaseID], windowSeconds: windowSeconds))
        }
    }

    var windowSeconds: Int { Int(policy.responseWindow.components.seconds) }

    /// Sent jobs leave the queue, their requests become `sent`, their message ids are
    /// indexed for delivery callbacks, and their numbers stay busy for the response window:
    /// one statement, so the arrays are parsed once and the four changes travel together.
    static func recordSentQuery(_ sent: [(Job, String, Int?)], windowSeconds: Int) -> PostgresQuery {
        """
            WITH params AS (SELECT \(windowSeconds)::int AS window_seconds, \(Self.callLeaseSeconds)::int AS call_lease_seconds), t AS (
                SELECT * FROM unnest(\(sent.map(\.0.company.rawValue))::bigint[], \(sent.map(\.0.id))::bigint[],
                                     \(sent.map(\.0.request.rawValue))::bigint[], \(sent.map(\.0.destinationHash))::bytea[],
                                     \(sent.map(\.1))::text[], \(sent.map(\.2))::int[], \(sent.map(\.0.channel.rawValue))::text[])
                       AS t(company_id, job_id, request_id, hash, message_id, segments, channel)
            )\(fragment: recordSentChanges)
            """
    }

    /// A window's sends, noted on its claim if the claim is still held (its row locked, so
    /// the reaper, which records a claim's notes before failing the rest, either sees this
    /// note or finds the claim gone first). Returns a row if noted. A retry after an
    /// in-doubt commit notes nothing twice.
    static func noteSentQuery(_ sent: [(Job, String, Int?)]) -> PostgresQuery {
        """
            WITH claim AS (
                SELECT lease_id FROM sms_claims WHERE lease_id = \(sent[0].0.leaseID) FOR SHARE
            ), noted AS (
                INSERT INTO sms_claim_sent (lease_id, first_position, company_ids, job_ids, message_ids, segments)
                SELECT lease_id, \(sent.map(\.0.position).min() ?? 0), \(sent.map(\.0.company.rawValue))::bigint[],
                       \(sent.map(\.0.id))::bigint[], \(sent.map(\.1))::text[], \(sent.map(\.2))::int[]
                  FROM claim
                ON CONFLICT DO NOTHING
            )
            SELECT 1 FROM claim
            """
    }

    /// The full record of the claims' notes, which go: the jobs' other facts come from
    /// their rows (a job gone meanwhile, its company deleted, has nothing left to record).
    /// In number order, as every write of `open_surveys` locks its rows.
    static func applyNotedQuery(_ leaseIDs: [String], windowSeconds: Int) -> PostgresQuery {
        """
            WITH params AS (SELECT \(windowSeconds)::int AS window_seconds, \(Self.callLeaseSeconds)::int AS call_lease_seconds), noted AS (
                DELETE FROM sms_claim_sent WHERE lease_id = ANY(\(leaseIDs)::text[])
                RETURNING company_ids, job_ids, message_ids, segments
            ), t AS (
                SELECT j.company_id, j.job_id, j.request_id, j.destination_hash AS hash, n.message_id, n.segments, j.channel
                  FROM noted
                 CROSS JOIN LATERAL unnest(noted.company_ids, noted.job_ids, noted.message_ids, noted.segments)
                       AS n(company_id, job_id, message_id, segments)
                  JOIN sms_jobs AS j ON j.company_id = n.company_id AND j.job_id = n.job_id
                 ORDER BY j.destination_hash
            )\(fragment: recordSentChanges)
            """
    }

    /// What recording sends changes, given `params` (the response window, a call's lease)
    /// and the sent jobs as `t`.
    static let recordSentChanges: StaticString = """
        , done AS (
            DELETE FROM sms_jobs AS j USING t
             WHERE j.company_id = t.company_id AND j.job_id = t.job_id AND t.channel <> 'VOICE'
        ), calling AS (
            -- A call is not over when the provider takes it: its job (and number) stays,
            -- out of every claim, until the call's final status ends it or gives it back
            -- for another call (VoiceRepository). If that status never comes, the reaper
            -- takes the job away when this lease runs out.
            UPDATE sms_jobs AS j
               SET leased_until = now() + make_interval(secs => (SELECT call_lease_seconds FROM params)), lease_id = NULL, claim_position = NULL,
                   calls_placed = j.calls_placed + 1
              FROM t
             WHERE j.company_id = t.company_id AND j.job_id = t.job_id AND t.channel = 'VOICE'
        ), requests AS (
            -- A request reaped as `uncertain` meanwhile gets the truth now we know it.
            UPDATE survey_requests AS r
               SET status = 'sent', failure = NULL, failed_at = NULL, sent_at = now(),
                   provider_message_id = t.message_id, sms_segments = t.segments,
                   respond_by = now() + make_interval(secs => (SELECT window_seconds FROM params))
              FROM t
             WHERE r.company_id = t.company_id AND r.request_id = t.request_id
               AND (r.status = 'queued' OR (r.status = 'failed' AND r.failure = 'uncertain'))
        ), messages AS (
            -- Delivery callbacks (and a call's webhooks) find their request by the
            -- provider's id; e-mail has none.
            INSERT INTO provider_messages (provider_message_id, company_id, request_id)
            SELECT message_id, company_id, request_id FROM t WHERE channel <> 'EMAIL'
            ON CONFLICT DO NOTHING
        )
        -- The number stays busy for the response window, from now.
        UPDATE open_surveys AS o SET expires_at = now() + make_interval(secs => (SELECT window_seconds FROM params))
          FROM t
         WHERE o.destination_hash = t.hash AND o.company_id = t.company_id AND o.request_id = t.request_id
        """
}
