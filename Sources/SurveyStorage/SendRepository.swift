import Foundation
import Postgres
import SurveyDomain

/// Queues survey requests with their SMS jobs, applying the per-item policy rules in
/// set-based SQL (a call of 1000 items is a handful of statements, not thousands).
public struct SendRepository: Sendable {
    let database: Database
    let policy: SendingPolicy

    /// The channel workers LISTEN on; notified in the enqueueing transaction.
    public static let notificationChannel = "sms_jobs"

    public init(database: Database, policy: SendingPolicy) {
        self.database = database
        self.policy = policy
    }

    public struct Item: Sendable {
        public var draft: SurveyRequestDraft
        public var destinationHash: Data

        public init(draft: SurveyRequestDraft, destinationHash: Data) {
            self.draft = draft
            self.destinationHash = destinationHash
        }
    }

    /// Queues what the rules allow and returns one result per item, in input order. Every
    /// queued request is committed with its job before this returns. `first` runs at the
    /// start of the transaction (to claim an idempotency key: throwing ends it with nothing
    /// done), `record` at its end with the results (to store the idempotent response), so
    /// that the claim, the work and the response commit or vanish together.
    public func enqueue(
        _ items: [Item], survey surveyID: SurveyID, company: CompanyID,
        first: (@Sendable (PostgresConnection) async throws -> Void)? = nil,
        record: (@Sendable ([SendResult], PostgresConnection) async throws -> Void)? = nil
    ) async throws -> [SendResult] {
        // Lock order is by hash everywhere, but a deadlock with some other writer stays
        // possible in principle; the transaction is safe to run again from the start.
        do {
            return try await Database.retryingConflicts {
                try await enqueueOnce(items, survey: surveyID, company: company, first: first, record: record)
            }
        } catch let error as PostgresError where error.sqlState == PostgresError.SQLState.foreignKeyViolation {
            // The survey was deleted while this call ran.
            throw StorageError.notFound
        }
    }

    private func enqueueOnce(
        _ items: [Item], survey surveyID: SurveyID, company: CompanyID,
        first: (@Sendable (PostgresConnection) async throws -> Void)?,
        record: (@Sendable ([SendResult], PostgresConnection) async throws -> Void)?
    ) async throws -> [SendResult] {
        try await database.withTenant(company) { connection in
            try await first?(connection)
            guard let survey = try await SurveyRepository(database: database)
                .survey(surveyID, company: company, on: connection)
            else { throw StorageError.notFound }

            // The rules' facts in one round trip: which numbers opted out (STOP, or this
            // company's own suppression list), which this
            // company surveyed within its resurvey period (a survey that surely never
            // reached the phone does not count), and when the company's surveys may go out.
            let hashes = items.map(\.destinationHash)
            let (optedOutList, recentList, quietStart, quietEnd, timeZone) = try await connection.query(
                """
                SELECT ARRAY(SELECT destination_hash FROM opt_outs WHERE destination_hash = ANY(\(hashes)::bytea[])
                             UNION
                             SELECT destination_hash FROM company_opt_outs
                              WHERE company_id = c.company_id AND destination_hash = ANY(\(hashes)::bytea[])),
                       ARRAY(SELECT DISTINCT r.destination_hash FROM survey_requests AS r
                              WHERE r.company_id = c.company_id AND r.destination_hash = ANY(\(hashes)::bytea[])
                                AND coalesce(r.sent_at, r.scheduled_for, r.created_at) > now() - make_interval(days => c.resurvey_days)
                                AND (r.status NOT IN ('failed', 'cancelled') OR r.failure = 'uncertain')),
                       to_char(c.quiet_hours_start, 'HH24:MI'), to_char(c.quiet_hours_end, 'HH24:MI'), c.time_zone
                  FROM companies AS c WHERE c.company_id = \(company)
                """
            ).one().decode(([Data], [Data], String?, String?, String).self)
            let optedOut = Set(optedOutList)
            let recent = Set(recentList)
            let schedule = CompanySettings(
                quietHours: CompanyRepository.quietHours(quietStart, quietEnd), timeZone: timeZone
            ).schedule
            let now = Date()

            // Decide in input order; the first occurrence of a number in the call stands for it.
            var results = [SendResult?](repeating: nil, count: items.count)
            var firstIndex: [Data: Int] = [:]
            var immediate: [Int] = []
            var later: [(index: Int, due: Date)] = []
            for (index, item) in items.enumerated() {
                // A repeat of a number already seen in this call is decided with its first, below.
                guard firstIndex[item.destinationHash] == nil else { continue }
                firstIndex[item.destinationHash] = index
                if optedOut.contains(item.destinationHash) {
                    results[index] = .skipped(.optedOut)
                } else if recent.contains(item.destinationHash) {
                    results[index] = .skipped(.recentlySurveyed)
                } else {
                    let due = schedule.dueTime(sendAt: item.draft.sendAt, now: now)
                    if due > now { later.append((index, due)) } else { immediate.append(index) }
                }
            }

            var counted: [Channel] = []
            if !immediate.isEmpty {
                counted += try await queue(
                    immediate.map { items[$0] }, indices: immediate, survey: survey, company: company, into: &results, on: connection)
            }
            if !later.isEmpty {
                counted += try await scheduleLater(
                    later.map { (items[$0.index], $0.due) }, indices: later.map(\.index), survey: survey, company: company,
                    into: &results, on: connection)
            }
            try await countAgainstDailyCaps(counted, company: company, on: connection)
            // A number given twice in one call: only its first item can be queued.
            for (index, item) in items.enumerated() where results[index] == nil {
                let first = firstIndex[item.destinationHash]!
                if case .skipped(let reason) = results[first]! {
                    results[index] = .skipped(reason)
                } else {
                    results[index] = .skipped(.destinationBusy)
                }
            }
            let final = results.map { $0! }
            try await record?(final, connection)
            return final
        }
    }

    /// Queues items due now: each claims its number's open-survey slot. Returns the channels
    /// of those queued.
    private func queue(
        _ items: [Item], indices: [Int], survey: Survey, company: CompanyID,
        into results: inout [SendResult?], on connection: PostgresConnection
    ) async throws -> [Channel] {
        // Claim each number's open-survey slot, drawing its request id on the way. Sorted
        // by hash so concurrent calls lock in the same order and cannot deadlock; an
        // expired slot is taken over.
        let sorted = items.map(\.destinationHash).sorted { $0.lexicographicallyPrecedes($1) }
        let slotSeconds = Int((policy.maximumJobAge + policy.responseWindow).components.seconds)
        let claimed = Dictionary(
            uniqueKeysWithValues: try await connection.query(
                // A SECURITY DEFINER function: the API cannot touch the routing table itself.
                "SELECT destination_hash, request_id FROM claim_open_surveys(\(sorted)::bytea[], \(slotSeconds)::int)"
            ).map { try $0.decode((Data, Int64).self) })

        var rows: [NewRequest] = []
        for (offset, item) in items.enumerated() {
            guard let requestID = claimed[item.destinationHash] else {
                results[indices[offset]] = .skipped(.destinationBusy)
                continue
            }
            guard let question = survey.question(for: item.draft.language) else { throw StorageError.notFound }
            rows.append(NewRequest(id: requestID, item: item, question: question, due: nil))
            results[indices[offset]] = .queued(RequestID(requestID))
        }
        try await insert(rows, survey: survey, company: company, on: connection)
        return rows.map(\.item.draft.channel)
    }

    /// Schedules items due later: a number busy now is skipped as it would be at once, but
    /// none claims its slot yet (that would keep it from every other company until then):
    /// the worker's scheduler admits each job when it falls due, checking the rules again.
    /// Returns the channels of those scheduled.
    private func scheduleLater(
        _ items: [(Item, due: Date)], indices: [Int], survey: Survey, company: CompanyID,
        into results: inout [SendResult?], on connection: PostgresConnection
    ) async throws -> [Channel] {
        let busy: Set<Data> = Set(
            try await connection.query("SELECT busy_destinations(\(items.map(\.0.destinationHash))::bytea[])")
                .map { try $0.decode(Data.self) })
        var accepted: [(offset: Int, item: Item, due: Date, question: Question)] = []
        for (offset, (item, due)) in items.enumerated() {
            if busy.contains(item.destinationHash) {
                results[indices[offset]] = .skipped(.destinationBusy)
                continue
            }
            guard let question = survey.question(for: item.draft.language) else { throw StorageError.notFound }
            accepted.append((offset, item, due, question))
        }
        guard !accepted.isEmpty else { return [] }
        let ids = try await connection.query(
            "SELECT nextval('survey_requests_request_id_seq') FROM generate_series(1, \(accepted.count))"
        ).map { try $0.decode(Int64.self) }
        var rows: [NewRequest] = []
        for (entry, id) in zip(accepted, ids) {
            results[indices[entry.offset]] = .scheduled(RequestID(id), for: entry.due)
            rows.append(NewRequest(id: id, item: entry.item, question: entry.question, due: entry.due))
        }
        try await insert(rows, survey: survey, company: company, on: connection)
        return accepted.map(\.item.draft.channel)
    }

    /// A request about to be written, with its job.
    private struct NewRequest {
        var id: Int64
        var item: Item
        var question: Question
        /// When it falls due if later than now: the job waits for the scheduler.
        var due: Date?
        /// The score links' token, for a request answered by link (e-mail).
        var token: ResponseLinkToken?

        init(id: Int64, item: Item, question: Question, due: Date?) {
            self.id = id
            self.item = item
            self.question = question
            self.due = due
            token = item.draft.channel == .email ? .generate() : nil
        }
    }

    /// The requests and their jobs in one statement. A job due later waits for admission
    /// (`needs_admission`) at its due time; the others are due now, and the workers are
    /// told at commit (so a worker never wakes before the jobs are visible).
    private func insert(_ rows: [NewRequest], survey: Survey, company: CompanyID, on connection: PostgresConnection) async throws {
        guard !rows.isEmpty else { return }
        try await connection.query(
            """
            WITH t AS (
                SELECT * FROM unnest(\(rows.map(\.id))::bigint[], \(rows.map(\.question.id.rawValue))::bigint[],
                                     \(rows.map(\.item.destinationHash))::bytea[], \(rows.map(\.item.draft.referenceID))::text[],
                                     \(rows.map(\.item.draft.language?.value))::text[],
                                     -- Segments cannot contain commas, so a comma-joined string
                                     -- carries a ragged list through unnest.
                                     \(rows.map { $0.item.draft.segments.joined(separator: ",") })::text[],
                                     \(rows.map(\.due))::timestamptz[], \(rows.map(\.item.draft.destination.raw))::text[],
                                     \(rows.map(\.question.body))::text[], \(rows.map(\.item.draft.channel.rawValue))::text[],
                                     \(rows.map(\.token?.value))::text[], \(rows.map(\.token?.hash))::bytea[])
                       AS t(request_id, question_id, hash, reference_id, language, segments, due, destination, body, channel,
                            token, token_hash)
            ), requests AS (
                INSERT INTO survey_requests
                       (company_id, request_id, survey_id, question_id, channel, destination_hash, reference_id, language, segments,
                        scheduled_for, response_token_hash)
                SELECT \(company), request_id, \(survey.id), question_id, channel, hash, reference_id, language,
                       CASE WHEN segments = '' THEN '{}'::text[] ELSE string_to_array(segments, ',') END, due, token_hash
                  FROM t
            ), jobs AS (
                -- The job refers to its request: both are written before the statement's
                -- constraints are checked.
                INSERT INTO sms_jobs
                       (company_id, request_id, destination_hash, destination, body, run_at, due_at, needs_admission, channel,
                        response_token, language)
                SELECT \(company), request_id, hash, destination, body, coalesce(due, now()), coalesce(due, now()), due IS NOT NULL,
                       channel, token, language
                  FROM t
            )
            SELECT pg_notify(\(Self.notificationChannel), '') WHERE \(rows.contains { $0.due == nil })
            """)
    }

    /// Adds what was queued to today's usage, per channel, unless that passes one of the
    /// company's caps, in which case the whole transaction is rolled back. Last before
    /// commit, so concurrent calls of the same company wait on the usage row only for each
    /// other's commit.
    private func countAgainstDailyCaps(_ channels: [Channel], company: CompanyID, on connection: PostgresConnection) async throws {
        let sms = channels.count { $0 == .sms }
        let emails = channels.count { $0 == .email }
        let calls = channels.count { $0 == .voice }
        guard sms + emails + calls > 0 else { return }
        let counted = try await connection.query(
            """
            INSERT INTO daily_sms_usage AS u (company_id, day, queued, emails_queued, calls_queued)
            SELECT c.company_id, (now() AT TIME ZONE 'UTC')::date, \(sms), \(emails), \(calls)
              FROM companies AS c
             WHERE c.company_id = \(company) AND \(sms) <= c.daily_sms_cap AND \(emails) <= c.daily_email_cap
               AND \(calls) <= c.daily_voice_cap
            ON CONFLICT (company_id, day) DO UPDATE
               SET queued = u.queued + EXCLUDED.queued, emails_queued = u.emails_queued + EXCLUDED.emails_queued,
                   calls_queued = u.calls_queued + EXCLUDED.calls_queued
             -- A channel this call queues nothing on is not checked (its cap may have been
             -- lowered below today's count: that stops it, not the others).
             WHERE (EXCLUDED.queued = 0
                    OR u.queued + EXCLUDED.queued <= (SELECT daily_sms_cap FROM companies WHERE company_id = \(company)))
               AND (EXCLUDED.emails_queued = 0
                    OR u.emails_queued + EXCLUDED.emails_queued <= (SELECT daily_email_cap FROM companies WHERE company_id = \(company)))
               AND (EXCLUDED.calls_queued = 0
                    OR u.calls_queued + EXCLUDED.calls_queued <= (SELECT daily_voice_cap FROM companies WHERE company_id = \(company)))
            RETURNING queued
            """)
        guard counted.isEmpty else { return }
        let allowances = try await CompanyRepository.allowances(company, on: connection)
        for (channel, requested) in [(Channel.sms, sms), (.email, emails), (.voice, calls)]
        where requested > allowances[channel].remaining {
            throw StorageError.dailyCapExceeded(channel, allowances[channel], requested: requested)
        }
        // Another call took the room between the two statements: the first channel asked for.
        let (channel, requested) = [(Channel.sms, sms), (.email, emails), (.voice, calls)].first { $0.1 > 0 }!
        throw StorageError.dailyCapExceeded(channel, allowances[channel], requested: requested)
    }
}
