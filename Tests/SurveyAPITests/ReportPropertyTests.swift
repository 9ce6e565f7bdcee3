import Foundation
import HTTPTypes
import HummingbirdTesting
import Postgres
import SurveyDomain
import SurveyStorage
import TestSupport
import Synchronization
import Testing

/// Random datasets and random reports: what the API answers must equal a straightforward
/// count over the rows the test wrote.
@Suite struct ReportPropertyTests {
    let harness: Harness

    init() async throws {
        harness = try await Harness()
    }

    static let segmentPool = ["a", "b", "c", "d"]
    static let languages: [String?] = ["en", "fr", nil]
    static let zones = ["UTC", "Europe/Brussels", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"]
    static let origin = Date(timeIntervalSince1970: 1_767_225_600)  // 2026-01-01T00:00Z

    static func randomRow(_ surveys: [Survey], _ random: inout SplitMix64) -> ReportRow {
        // Some rows on exact midnights and month starts, where the plan's pieces meet.
        let day = Double(Int.random(in: 0..<150, using: &random))
        let second: Double = Bool.random(using: &random) ? 0 : Double(Int.random(in: 0..<86_400, using: &random))
        let score: Int? = Int.random(in: 0..<3, using: &random) == 0 ? nil : Int.random(in: 0...10, using: &random)
        return ReportRow(
            survey: surveys.randomElement(using: &random)!,
            createdAt: origin.addingTimeInterval(day * 86_400 + second),
            status: Int.random(in: 0..<8, using: &random) == 0 ? "failed" : "delivered",
            score: score, badReplies: score == nil && Bool.random(using: &random) ? 1 : 0,
            segments: segmentPool.filter { _ in Int.random(in: 0..<3, using: &random) == 0 },
            language: languages.randomElement(using: &random)!)
    }

    static func randomDate(_ random: inout SplitMix64) -> String {
        let date = origin.addingTimeInterval(Double(Int.random(in: -10...160, using: &random)) * 86_400)
        let text = Timestamp.format(date)
        switch Int.random(in: 0..<3, using: &random) {
        case 0: return String(text.prefix(10))  // a plain date
        case 1: return String(text.prefix(11)) + String(format: "%02d:%02d:00+05:30", Int.random(in: 0..<24, using: &random), Int.random(in: 0..<60, using: &random))
        default: return String(text.prefix(11)) + String(format: "%02d:00", Int.random(in: 0..<24, using: &random))  // wall time
        }
    }

    @Test(arguments: 0..<12)
    func reportsEqualAStraightforwardCount(seed: UInt64) async throws {
        var random = SplitMix64(seed: seed &* 7919 &+ 1)
        var fixture = try await ReportFixture(harness: harness)
        let surveys = [
            try await fixture.addSurvey("one", interactionType: "x"), try await fixture.addSurvey("two", interactionType: "y"),
            try await fixture.addSurvey("three", interactionType: "x"),
        ]
        let rows = (0..<Int.random(in: 50...400, using: &random)).map { _ in Self.randomRow(surveys, &random) }
        try await fixture.insert(rows, steps: Int.random(in: 1...4, using: &random), compact: Bool.random(using: &random))
        let now = Date()

        struct Case: Sendable {
            var path: String
            var parameters: [(String, String)]
            var query: ReportQuery
            var buckets: [Range<Date>]
            var trend: Bool
        }
        var cases: [Case] = []
        for _ in 0..<6 {
                var parameters: [(String, String)] = []
                var dates = [Self.randomDate(&random), Self.randomDate(&random)]
                if dates[0] > dates[1] { dates.swapAt(0, 1) }
                parameters += [("startDate", dates[0]), ("endDate", dates[1])]
                let zone = Self.zones.randomElement(using: &random)!
                parameters.append(("timezone", zone))
                if Bool.random(using: &random) {
                    parameters.append(("segments", Self.segmentPool.filter { _ in Bool.random(using: &random) }.joined(separator: ",")))
                    parameters.append(("segmentMode", Bool.random(using: &random) ? "ALL" : "ANY"))
                }
                let survey: Survey? = Bool.random(using: &random) ? surveys.randomElement(using: &random) : nil
                let trend = Int.random(in: 0..<3, using: &random) == 0
                let interval = ["day", "week", "month"].randomElement(using: &random)!
                let grouping = ReportGrouping.allCases.randomElement(using: &random)!
                if trend {
                    parameters.append(("interval", interval))
                } else if Bool.random(using: &random) {
                    parameters.append(("groupBy", grouping.rawValue))
                }
                let path = (survey.map { "/surveys/\($0.id)" } ?? "") + (trend ? "/report/trend" : "/report")

                // The reference: the same parameters read by the domain, rows counted one by one.
                let raw = ReportParameters(
                    startDate: dates[0], endDate: dates[1], timezone: zone, channel: nil,
                    segments: parameters.filter { $0.0 == "segments" }.map(\.1),
                    segmentMode: parameters.first { $0.0 == "segmentMode" }?.1, interval: trend ? interval : nil,
                    groupBy: parameters.first { $0.0 == "groupBy" }?.1)
                let query = try raw.query(survey: survey?.id, now: now)
                cases.append(Case(path: path, parameters: parameters, query: query, buckets: try query.buckets(), trend: trend))
        }
        let tenant = fixture.tenant
        let allCases = cases
        try await harness.test { client in
            for (attempt, item) in allCases.enumerated() {
                let (path, parameters, query, buckets, trend) = (item.path, item.parameters, item.query, item.buckets, item.trend)
                let context = "seed \(seed) attempt \(attempt): \(path)?\(queryString(parameters))"
                let matching = rows.filter {
                    query.filter.matches(survey: $0.survey.id, channel: .sms, segments: $0.segments) && query.period.contains($0.createdAt)
                }

                let response = try await client.send(.get, "\(base)\(path)?\(queryString(parameters))", headers: tenant.headers)
                #expect(response.status == .ok, "\(context): \(response.text)")
                expectCounts(response.object, matching.map(\.counts).reduce(.zero, +), context)

                if trend {
                    let answered = response.object["buckets"] as? [[String: Any]] ?? []
                    #expect(answered.count == buckets.count, "\(context)")
                    for (bucket, object) in zip(buckets, answered) {
                        expectCounts(object, matching.filter { bucket.contains($0.createdAt) }.map(\.counts).reduce(.zero, +), "\(context) bucket \(bucket)")
                    }
                }
                if let grouping = query.grouping {
                    var expected: [String: ReportCounts] = [:]
                    for row in matching {
                        let keys: [String] =
                            switch grouping {
                            case .survey: [String(row.survey.id.rawValue)]
                            case .interactionType: [row.survey.interactionType]
                            case .segment: row.segments.isEmpty ? ["∅"] : row.segments
                            case .language: [row.language ?? "∅"]
                            }
                        for key in keys { expected[key, default: .zero] += row.counts }
                    }
                    let answered = response.object["groups"] as? [[String: Any]] ?? []
                    var actual: [String: [String: Any]] = [:]
                    for group in answered {
                        let key: String =
                            switch grouping {
                            case .survey: "\((group["survey"] as? [String: Any])?["id"] as? Int ?? -1)"
                            case .interactionType: group["interactionType"] as? String ?? "?"
                            case .segment: group["segment"] as? String ?? "∅"
                            case .language: group["language"] as? String ?? "∅"
                            }
                        actual[key] = group
                    }
                    #expect(Set(actual.keys) == Set(expected.keys), "\(context)")
                    for (key, counts) in expected {
                        expectCounts(actual[key] ?? [:], counts, "\(context) group \(key)")
                    }
                }
            }
        }
    }
}

/// Writers and compaction at the same time: the rollups must still add up to the rows.
@Suite struct ReportRollupConcurrencyTests {
    @Test func compactionConcurrentWithWritesKeepsEverySumExact() async throws {
        let harness = try await Harness()
        var fixture = try await ReportFixture(harness: harness)
        let survey = try await fixture.addSurvey("busy", interactionType: "x")
        let writers = fixture
        let done = ManagedAtomicFlag()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<4 {
                group.addTask {
                    var random = SplitMix64(seed: UInt64(writer))
                    for _ in 0..<15 {
                        let rows = (0..<10).map { _ in ReportPropertyTests.randomRow([survey], &random) }
                        try await writers.insert(rows, steps: 2, compact: false)
                    }
                }
            }
            group.addTask {
                let superuser = try await harness.superuser()
                while !done.isSet {
                    try await ReportFixture.compact(superuser, cells: 2)
                }
            }
            // Wait for the writers, then stop the compactor.
            for _ in 0..<4 { try await group.next() }
            done.set()
            try await group.waitForAll()
        }
        let superuser = try await harness.superuser()
        let mismatches = try await superuser.withConnection { connection in
            try await connection.query(
                """
                WITH raw AS (
                    SELECT count(*) AS requests, count(*) FILTER (WHERE status = 'failed') AS failed,
                           count(*) FILTER (WHERE score IS NOT NULL) AS good,
                           count(*) FILTER (WHERE score IS NULL AND bad_replies > 0) AS bad,
                           count(*) FILTER (WHERE score >= 9) AS promoters
                      FROM survey_requests WHERE company_id = \(fixture.tenant.id)
                ), rolled AS (
                    SELECT detail, grain, sum(requests) AS requests, sum(failed) AS failed, sum(good) AS good,
                           sum(bad) AS bad, sum(promoters) AS promoters
                      FROM report_rollups WHERE company_id = \(fixture.tenant.id)
                     GROUP BY detail, grain
                )
                SELECT count(*)::int FROM rolled, raw
                 WHERE (rolled.requests, rolled.failed, rolled.good, rolled.bad, rolled.promoters)
                       IS DISTINCT FROM (raw.requests, raw.failed, raw.good, raw.bad, raw.promoters)
                    OR raw.requests <> 600
                """
            ).one().decode(Int.self)
        }
        #expect(mismatches == 0)
        let levels = try await superuser.withConnection { connection in
            try await connection.query(
                "SELECT count(DISTINCT (detail, grain))::int FROM report_rollups WHERE company_id = \(fixture.tenant.id)"
            ).one().decode(Int.self)
        }
        #expect(levels == 8)
    }
}

/// A flag one task sets and another polls.
final class ManagedAtomicFlag: Sendable {
    private let flag = Mutex(false)
    var isSet: Bool { flag.withLock { $0 } }
    func set() { flag.withLock { $0 = true } }
}
