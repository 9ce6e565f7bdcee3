import Foundation
import HTTPTypes
import HummingbirdTesting
import Postgres
import SurveyDomain
import SurveyStorage
import TestSupport
import Testing

/// One survey request as a test wants it to end up, written straight into the database
/// (as the superuser, so created_at can be anything) and moved through its lifecycle with
/// UPDATEs, the way sends, the worker and replies do; the triggers keep the rollups.
struct ReportRow: Sendable {
    var survey: Survey
    var createdAt: Date
    var status = "delivered"
    var score: Int?
    var badReplies = 0
    var segments: [String] = []
    var language: String?

    var counts: ReportCounts {
        ReportCounts(
            requests: 1, failed: status == "failed" ? 1 : 0, good: score == nil ? 0 : 1,
            bad: score == nil && badReplies > 0 ? 1 : 0, promoters: (score ?? -1) >= 9 ? 1 : 0,
            passives: (7...8).contains(score ?? -1) ? 1 : 0, detractors: (0...6).contains(score ?? -1) ? 1 : 0)
    }
}

struct ReportFixture {
    let harness: Harness
    let tenant: Tenant
    var surveys: [Survey] = []

    init(harness: Harness) async throws {
        self.harness = harness
        tenant = try await harness.company()
    }

    mutating func addSurvey(_ name: String, interactionType: String) async throws -> Survey {
        let survey = try await SurveyRepository(database: harness.database).create(
            NewSurvey(name: name, interactionType: interactionType, questions: [NewQuestion(body: "0-10?", language: try LanguageTag(parsing: "en"))]),
            company: tenant.id)
        surveys.append(survey)
        return survey
    }

    /// Inserts `rows` as queued, then, in `steps` statements, gives each its outcome,
    /// compacting the rollups in between when `compactEvery` says so.
    func insert(_ rows: [ReportRow], steps: Int = 2, compact: Bool = true) async throws {
        guard !rows.isEmpty else { return }
        let superuser = try await harness.superuser()
        let ids: [Int64] = try await superuser.withConnection { connection in
            let inserted = try await connection.query(
                """
                INSERT INTO survey_requests (company_id, survey_id, question_id, channel, destination_hash, reference_id, language, segments, created_at)
                SELECT \(tenant.id), t.survey, t.question, 'SMS', decode(md5(t.i::text || random()::text) || md5(t.i::text), 'hex'),
                       t.i::text, NULLIF(t.language, ''), CASE WHEN t.segments = '' THEN '{}'::text[] ELSE string_to_array(t.segments, ',') END,
                       t.created_at
                  FROM unnest(\(rows.map(\.survey.id.rawValue))::bigint[], \(rows.map { $0.survey.questions[0].id.rawValue })::bigint[],
                              \(rows.map { $0.language ?? "" })::text[], \(rows.map { $0.segments.sorted().joined(separator: ",") })::text[],
                              \(rows.map(\.createdAt))::timestamptz[]) WITH ORDINALITY AS t(survey, question, language, segments, created_at, i)
                RETURNING reference_id::int, request_id
                """)
            var ids = Array(repeating: Int64(0), count: rows.count)
            for row in inserted {
                let (index, id) = try row.decode((Int, Int64).self)
                ids[index - 1] = id
            }
            return ids
        }
        if compact { try await Self.compact(superuser, cells: 500) }
        let chunk = max(1, (rows.count + steps - 1) / steps)
        for start in stride(from: 0, to: rows.count, by: chunk) {
            let part = Array(start..<min(rows.count, start + chunk))
            try await superuser.withConnection { connection in
                try await connection.query(
                    """
                    UPDATE survey_requests AS r
                       SET status = t.status, score = NULLIF(t.score, -1), bad_replies = t.bad
                      FROM unnest(\(part.map { ids[$0] })::bigint[], \(part.map { rows[$0].status })::text[], \(part.map { rows[$0].score ?? -1 })::int[],
                                  \(part.map { rows[$0].badReplies })::int[]) AS t(id, status, score, bad)
                     WHERE r.company_id = \(tenant.id) AND r.request_id = t.id
                    """)
            }
        }
        if compact { try await Self.compact(superuser, cells: 3) }
    }

    /// Folds up to `cells` rollup cells (as the worker's compactor does).
    static func compact(_ client: PostgresClient, cells: Int) async throws {
        try await client.withConnection { connection in
            _ = try await connection.query("SELECT compact_report_rollups(\(cells))")
        }
    }
}

/// Encodes a query string, `+` and all.
func queryString(_ parameters: [(String, String)]) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~")
    return parameters.map { "\($0)=\($1.addingPercentEncoding(withAllowedCharacters: allowed)!)" }.joined(separator: "&")
}

/// Checks a report's `nps` and `responseStatistics` against counts computed by hand.
func expectCounts(_ object: [String: Any], _ expected: ReportCounts, _ context: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    let nps = object["nps"] as? [String: Any] ?? [:]
    let statistics = object["responseStatistics"] as? [String: Any] ?? [:]
    func int(_ value: Any?) -> Int64? { (value as? NSNumber)?.int64Value }
    func decimal(_ value: Any?) -> Double? { value is NSNull ? nil : (value as? NSNumber)?.doubleValue }
    let actual = ReportCounts(
        requests: int(statistics["totalRequests"]) ?? -1, failed: int(statistics["failed"]) ?? -1,
        good: int(statistics["goodResponses"]) ?? -1, bad: int(statistics["badResponses"]) ?? -1,
        promoters: int(nps["promoters"]) ?? -1, passives: int(nps["passives"]) ?? -1, detractors: int(nps["detractors"]) ?? -1)
    #expect(actual == expected, "\(context)", sourceLocation: sourceLocation)
    #expect(int(statistics["totalResponses"]) == expected.responses, "\(context)", sourceLocation: sourceLocation)
    #expect(decimal(nps["score"]) == expected.score?.doubleValue, "\(context)", sourceLocation: sourceLocation)
    #expect(nps.keys.contains("score"), sourceLocation: sourceLocation)
    #expect(decimal(nps["marginOfError"]) == expected.marginOfError?.doubleValue, "\(context)", sourceLocation: sourceLocation)
    #expect(decimal(statistics["responseRate"]) == expected.responseRate?.doubleValue, "\(context)", sourceLocation: sourceLocation)
}
