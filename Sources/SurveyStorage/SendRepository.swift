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
    /// queued request is committed with its job before this returns. `record` runs inside
    /// the same transaction with the results (to store an idempotent response atomically).
    public func enqueue(
        _ items: [Item], survey surveyID: SurveyID, company: CompanyID,
        record: (@Sendable ([SendResult], PostgresConnection) async throws -> Void)? = nil
    ) async throws -> [SendResult] {
        // Lock order is by hash everywhere, but a deadlock with some other writer stays
        // possible in principle; the transaction is safe to run again from the start.
        var attempt = 1
        while true {
            do {
                return try await enqueueOnce(items, survey: surveyID, company: company, record: record)
            } catch let error as PostgresError
                where attempt < 3
                && (error.sqlState == PostgresError.SQLState.deadlockDetected || error.sqlState == PostgresError.SQLState.serializationFailure)
            {
                attempt += 1
            } catch let error as PostgresError where error.sqlState == PostgresError.SQLState.foreignKeyViolation {
                // The survey was deleted while this call ran.
                throw StorageError.notFound
            }
        }
    }

    private func enqueueOnce(
        _ items: [Item], survey surveyID: SurveyID, company: CompanyID,
        record: (@Sendable ([SendResult], PostgresConnection) async throws -> Void)?
    ) async throws -> [SendResult] {
        try await database.withTenant(company) { connection in
            guard let survey = try await SurveyRepository(database: database)
                .surveys(where: surveyID, after: nil, limit: 1, company: company, on: connection).first
            else { throw StorageError.notFound }

            let hashes = items.map(\.destinationHash)
            let resurveyDays = try await connection.query(
                "SELECT resurvey_days FROM companies WHERE company_id = \(company)").one().decode(Int.self)
            let optedOut = try await hashSet(
                connection.query("SELECT destination_hash FROM opt_outs WHERE destination_hash = ANY(\(hashes)::bytea[])"))
            let recent = try await hashSet(
                connection.query(
                    """
                    SELECT DISTINCT destination_hash FROM survey_requests
                     WHERE company_id = \(company) AND destination_hash = ANY(\(hashes)::bytea[])
                       AND created_at > now() - make_interval(days => \(resurveyDays))
                       -- A survey that surely never reached the phone does not count.
                       AND (status <> 'failed' OR failure = 'uncertain')
                    """))

            // Decide in input order; the first occurrence of a number in the call stands for it.
            var results = [SendResult?](repeating: nil, count: items.count)
            var firstIndex: [Data: Int] = [:]
            var candidates: [Int] = []
            for (index, item) in items.enumerated() {
                // A repeat of a number already seen in this call is decided with its first, below.
                guard firstIndex[item.destinationHash] == nil else { continue }
                firstIndex[item.destinationHash] = index
                if optedOut.contains(item.destinationHash) {
                    results[index] = .skipped(.optedOut)
                } else if resurveyDays > 0, recent.contains(item.destinationHash) {
                    results[index] = .skipped(.recentlySurveyed)
                } else {
                    candidates.append(index)
                }
            }

            if !candidates.isEmpty {
                try await queue(candidates.map { items[$0] }, indices: candidates, survey: survey, company: company,
                    into: &results, on: connection)
            }
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

    private func queue(
        _ items: [Item], indices: [Int], survey: Survey, company: CompanyID,
        into results: inout [SendResult?], on connection: PostgresConnection
    ) async throws {
        let ids = try await connection.query(
            "SELECT nextval('survey_requests_request_id_seq') FROM generate_series(1, \(items.count))"
        ).map { try $0.decode(Int64.self) }

        // Claim each number's open-survey slot. Sorted by hash so concurrent calls lock in
        // the same order and cannot deadlock; an expired slot is taken over.
        let order = items.indices.sorted { items[$0].destinationHash.lexicographicallyPrecedes(items[$1].destinationHash) }
        let slotSeconds = Int((policy.maximumJobAge + policy.responseWindow).components.seconds)
        let claimed = try await hashSet(
            connection.query(
                """
                INSERT INTO open_surveys (destination_hash, company_id, request_id, expires_at)
                SELECT hash, \(company), request_id, now() + make_interval(secs => \(slotSeconds))
                  FROM unnest(\(order.map { items[$0].destinationHash })::bytea[], \(order.map { ids[$0] })::bigint[])
                       AS t(hash, request_id)
                ON CONFLICT (destination_hash) DO UPDATE
                   SET company_id = EXCLUDED.company_id, request_id = EXCLUDED.request_id, expires_at = EXCLUDED.expires_at
                 WHERE open_surveys.expires_at <= now()
                RETURNING destination_hash
                """))

        var requestIDs: [Int64] = []
        var questionIDs: [Int64] = []
        var hashes: [Data] = []
        var references: [String?] = []
        var languages: [String?] = []
        var segments: [String] = []
        var destinations: [String] = []
        var bodies: [String] = []
        for (offset, item) in items.enumerated() {
            guard claimed.contains(item.destinationHash) else {
                results[indices[offset]] = .skipped(.destinationBusy)
                continue
            }
            guard let question = survey.question(for: item.draft.language) else { throw StorageError.notFound }
            requestIDs.append(ids[offset])
            questionIDs.append(question.id.rawValue)
            hashes.append(item.destinationHash)
            references.append(item.draft.referenceID)
            languages.append(item.draft.language?.value)
            // Segments cannot contain commas, so a comma-joined string carries a ragged list
            // through unnest.
            segments.append(item.draft.segments.joined(separator: ","))
            destinations.append(item.draft.destination.e164)
            bodies.append(question.body)
            results[indices[offset]] = .queued(RequestID(ids[offset]))
        }
        guard !requestIDs.isEmpty else { return }

        try await connection.query(
            """
            INSERT INTO survey_requests
                   (company_id, request_id, survey_id, question_id, channel, destination_hash, reference_id, language, segments)
            SELECT \(company), request_id, \(survey.id), question_id, 'SMS', hash, reference_id, language,
                   CASE WHEN segments = '' THEN '{}'::text[] ELSE string_to_array(segments, ',') END
              FROM unnest(\(requestIDs)::bigint[], \(questionIDs)::bigint[], \(hashes)::bytea[],
                          \(references)::text[], \(languages)::text[], \(segments)::text[])
                   AS t(request_id, question_id, hash, reference_id, language, segments)
            """)
        try await connection.query(
            """
            INSERT INTO sms_jobs (company_id, request_id, destination_hash, destination, body)
            SELECT \(company), request_id, hash, destination, body
              FROM unnest(\(requestIDs)::bigint[], \(hashes)::bytea[], \(destinations)::text[], \(bodies)::text[])
                   AS t(request_id, hash, destination, body)
            """)
        // Delivered at commit, so a worker never wakes before the jobs are visible.
        try await connection.query("SELECT pg_notify(\(Self.notificationChannel), '')")
    }

    private func hashSet(_ rows: PostgresRows) throws -> Set<Data> {
        Set(try rows.map { try $0.decode(Data.self) })
    }
}
