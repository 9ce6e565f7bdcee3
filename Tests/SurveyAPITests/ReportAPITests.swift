import APITestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Hummingbird
import SurveyAPI
import Postgres
import SurveyDomain
import SurveyStorage
import TestSupport
import Testing

@Suite struct ReportAPITests {
    let harness: Harness

    init() async throws {
        harness = try await Harness()
    }

    static func date(_ text: String) -> Date {
        try! ReportParameters(startDate: text, endDate: "2028-01-01").query(survey: nil, now: Date()).period.lowerBound
    }

    func get(_ client: any TestClientProtocol, _ tenant: Tenant, _ path: String, _ parameters: [(String, String)] = []) async throws -> TestResponse {
        let query = parameters.isEmpty ? "" : "?" + queryString(parameters)
        return try await client.send(.get, "\(base)\(path)\(query)", headers: tenant.headers)
    }

    /// A small company whose numbers are worked out by hand in the comments, with another
    /// company's data on the same days.
    func knownDataset() async throws -> (ReportFixture, sales: Survey, care: Survey) {
        var fixture = try await ReportFixture(harness: harness)
        let sales = try await fixture.addSurvey("Sales", interactionType: "sales")
        let care = try await fixture.addSurvey("Care", interactionType: "care")
        try await fixture.insert([
            // On startDate exactly: counted. Promoter.
            ReportRow(survey: sales, createdAt: Self.date("2026-03-01T00:00:00Z"), score: 10, segments: ["north", "gold"], language: "en"),
            ReportRow(survey: sales, createdAt: Self.date("2026-03-10T12:00:00Z"), score: 8, segments: ["north"], language: "fr"),
            ReportRow(survey: sales, createdAt: Self.date("2026-03-15T08:00:00Z"), score: 3, segments: ["south"], language: "en"),
            // Bad replies only.
            ReportRow(survey: sales, createdAt: Self.date("2026-03-20T08:00:00Z"), score: nil, badReplies: 2, segments: ["north"]),
            ReportRow(survey: sales, createdAt: Self.date("2026-03-25T08:00:00Z"), status: "failed", segments: ["gold"]),
            // The last millisecond of March (UTC): counted. After 22:00Z, so April in Brussels.
            ReportRow(survey: care, createdAt: Self.date("2026-03-31T23:59:59.999Z"), score: 9),
            // On endDate exactly: not counted.
            ReportRow(survey: care, createdAt: Self.date("2026-04-01T00:00:00Z"), score: 0),
            // February in UTC, March 1st 00:30 in Brussels.
            ReportRow(survey: care, createdAt: Self.date("2026-02-28T23:30:00Z"), score: 0),
        ])
        var other = try await ReportFixture(harness: harness)
        let theirs = try await other.addSurvey("Theirs", interactionType: "sales")
        try await other.insert((0..<20).map { index in
            ReportRow(survey: theirs, createdAt: Self.date("2026-03-0\(index % 9 + 1)T10:00:00Z"), score: 10, segments: ["north"], language: "en")
        })
        return (fixture, sales, care)
    }

    static let march: [(String, String)] = [("startDate", "2026-03-01T00:00:00Z"), ("endDate", "2026-04-01T00:00:00+00:00")]

    @Test func companyReportCountsExactlyTheHalfOpenPeriod() async throws {
        let (fixture, _, _) = try await knownDataset()
        try await harness.test { client in
            let response = try await get(client, fixture.tenant, "/report", Self.march)
            #expect(response.status == .ok, "\(response.text)")
            // Rows 1–6: promoters 10 and 9, passive 8, detractor 3, one bad, one failed.
            // Score = 100 × (2 − 1) / 4 = 25; response rate 5/6 = 83.3 %.
            expectCounts(response.object, ReportCounts(requests: 6, failed: 1, good: 4, bad: 1, promoters: 2, passives: 1, detractors: 1))
            #expect((response.object["nps"] as? [String: Any])?["score"] as? Double == 25)
            #expect((response.object["responseStatistics"] as? [String: Any])?["responseRate"] as? Double == 83.3)
            // The reference's fields first, in its order; ours after.
            #expect(response.text.hasPrefix(#"{"date":""#))
            let order = ["\"date\"", "\"from\"", "\"to\"", "\"segments\"", "\"segmentMode\"", "\"nps\"", "\"responseStatistics\"", "\"channel\"", "\"timezone\""]
            let positions = order.map { response.text.range(of: $0)?.lowerBound }
            #expect(positions.allSatisfy { $0 != nil })
            #expect(positions.compactMap { $0 }.sorted() == positions.compactMap { $0 })
            #expect(response.object["from"] as? String == "2026-03-01T00:00:00.000+00:00")
            #expect(response.object["to"] as? String == "2026-04-01T00:00:00.000+00:00")
            #expect(response.object["segments"] as? [String] == [])
            #expect(response.object["segmentMode"] as? String == "ALL")
            #expect(response.object["timezone"] as? String == "UTC")
        }
    }

    @Test func plainDatesInATimeZone() async throws {
        let (fixture, _, _) = try await knownDataset()
        try await harness.test { client in
            // March in Brussels: [Feb 28 23:00Z, Mar 31 22:00Z): rows 1–5 and the 23:30Z one,
            // not the 23:59:59.999Z one. Promoter 10, passive 8, detractors 3 and 0.
            let response = try await get(client, fixture.tenant, "/report", [
                ("startDate", "2026-03-01"), ("endDate", "2026-03-31"), ("timezone", "Europe/Brussels"),
            ])
            expectCounts(response.object, ReportCounts(requests: 6, failed: 1, good: 4, bad: 1, promoters: 1, passives: 1, detractors: 2))
            #expect((response.object["nps"] as? [String: Any])?["score"] as? Double == -25)
            #expect(response.object["from"] as? String == "2026-03-01T00:00:00.000+01:00")
            #expect(response.object["to"] as? String == "2026-04-01T00:00:00.000+02:00")
            #expect(response.object["timezone"] as? String == "Europe/Brussels")
        }
    }

    @Test func segmentModes() async throws {
        let (fixture, _, _) = try await knownDataset()
        try await harness.test { client in
            let all = try await get(client, fixture.tenant, "/report", Self.march + [("segments", "north,gold")])
            expectCounts(all.object, ReportCounts(requests: 1, good: 1, promoters: 1))
            #expect(all.object["segments"] as? [String] == ["north", "gold"])
            // Repeated parameters work too.
            let any = try await get(client, fixture.tenant, "/report", Self.march + [("segments", "north"), ("segments", "gold"), ("segmentMode", "ANY")])
            expectCounts(any.object, ReportCounts(requests: 4, failed: 1, good: 2, bad: 1, promoters: 1, passives: 1))
            #expect(any.object["segmentMode"] as? String == "ANY")
            let none = try await get(client, fixture.tenant, "/report", Self.march + [("segments", "west")])
            expectCounts(none.object, ReportCounts())
            #expect((none.object["nps"] as? [String: Any])?["score"] is NSNull)
        }
    }

    @Test func surveyReportMatchesTheAPIReferenceExample() async throws {
        let (fixture, _, care) = try await knownDataset()
        try await harness.test { client in
            let response = try await get(client, fixture.tenant, "/surveys/\(care.id)/report", Self.march + [("channel", "SMS")])
            #expect(response.status == .ok)
            // The reference's example: one request, one good response, a promoter.
            expectCounts(response.object, ReportCounts(requests: 1, good: 1, promoters: 1))
            let nps = response.object["nps"] as? [String: Any]
            #expect(nps?["promoters"] as? Int == 1 && nps?["detractors"] as? Int == 0 && nps?["score"] as? Int == 100)
            #expect(response.text.contains(#""nps":{"promoters":1,"detractors":0,"score":100,"#))
            #expect(response.text.contains(#""responseStatistics":{"totalRequests":1,"totalResponses":1,"goodResponses":1,"badResponses":0,"failed":0,"#))
            #expect(response.object["surveyId"] as? Int64 == care.id.rawValue)
            #expect(response.object["channel"] as? String == "SMS")
        }
    }

    @Test func breakdowns() async throws {
        let (fixture, sales, care) = try await knownDataset()
        try await harness.test { client in
            let bySurvey = try await get(client, fixture.tenant, "/report", Self.march + [("groupBy", "survey")])
            let surveys = bySurvey.object["groups"] as? [[String: Any]] ?? []
            #expect(surveys.map { ($0["survey"] as? [String: Any])?["id"] as? Int64 } == [sales.id.rawValue, care.id.rawValue])
            #expect(surveys.map { ($0["survey"] as? [String: Any])?["name"] as? String } == ["Sales", "Care"])
            if surveys.count == 2 {
                expectCounts(surveys[0], ReportCounts(requests: 5, failed: 1, good: 3, bad: 1, promoters: 1, passives: 1, detractors: 1))
                expectCounts(surveys[1], ReportCounts(requests: 1, good: 1, promoters: 1))
            }
            // The totals stay the company's.
            expectCounts(bySurvey.object, ReportCounts(requests: 6, failed: 1, good: 4, bad: 1, promoters: 2, passives: 1, detractors: 1))

            let byType = try await get(client, fixture.tenant, "/report", Self.march + [("groupBy", "interactionType")])
            #expect((byType.object["groups"] as? [[String: Any]] ?? []).map { $0["interactionType"] as? String } == ["care", "sales"])

            // A request with two segments counts in both; requests without any under null.
            let bySegment = try await get(client, fixture.tenant, "/report", Self.march + [("groupBy", "segment")])
            let segments = bySegment.object["groups"] as? [[String: Any]] ?? []
            #expect(segments.map { $0["segment"] as? String } == ["gold", "north", "south", nil])
            #expect(segments.map { ($0["responseStatistics"] as? [String: Any])?["totalRequests"] as? Int } == [2, 3, 1, 1])
            expectCounts(bySegment.object, ReportCounts(requests: 6, failed: 1, good: 4, bad: 1, promoters: 2, passives: 1, detractors: 1))

            let byLanguage = try await get(client, fixture.tenant, "/report", Self.march + [("groupBy", "language")])
            let languages = byLanguage.object["groups"] as? [[String: Any]] ?? []
            #expect(languages.map { $0["language"] as? String } == ["en", "fr", nil])
            #expect(languages.map { ($0["responseStatistics"] as? [String: Any])?["totalRequests"] as? Int } == [2, 1, 3])
        }
    }

    @Test func trendsIncludeEmptyBucketsAndClipToThePeriod() async throws {
        let (fixture, _, care) = try await knownDataset()
        try await harness.test { client in
            let response = try await get(client, fixture.tenant, "/report/trend", [
                ("startDate", "2026-02-15"), ("endDate", "2026-04-14"), ("interval", "month"),
            ])
            #expect(response.status == .ok, "\(response.text)")
            let buckets = response.object["buckets"] as? [[String: Any]] ?? []
            #expect(buckets.map { $0["from"] as? String } == [
                "2026-02-15T00:00:00.000+00:00", "2026-03-01T00:00:00.000+00:00", "2026-04-01T00:00:00.000+00:00",
            ])
            #expect(buckets.last?["to"] as? String == "2026-04-15T00:00:00.000+00:00")
            #expect(buckets.map { ($0["responseStatistics"] as? [String: Any])?["totalRequests"] as? Int } == [1, 6, 1])
            expectCounts(response.object, ReportCounts(requests: 8, failed: 1, good: 6, bad: 1, promoters: 2, passives: 1, detractors: 3))
            #expect(response.object["interval"] as? String == "month")

            let days = try await get(client, fixture.tenant, "/surveys/\(care.id)/report/trend", [("startDate", "2026-03-30"), ("endDate", "2026-04-02")])
            let dayBuckets = days.object["buckets"] as? [[String: Any]] ?? []
            #expect(days.object["interval"] as? String == "day")
            #expect(dayBuckets.map { ($0["responseStatistics"] as? [String: Any])?["totalRequests"] as? Int } == [0, 1, 1, 0])
            #expect(dayBuckets.map { ($0["nps"] as? [String: Any])?["score"] is NSNull } == [true, false, false, true])
        }
    }

    @Test func anotherCompanysSurveyIsNotFound() async throws {
        let (fixture, sales, _) = try await knownDataset()
        let intruder = try await harness.company()
        try await harness.test { client in
            for path in ["/surveys/\(sales.id)/report", "/surveys/\(sales.id)/report/trend"] {
                let response = try await get(client, intruder, path, Self.march)
                response.expectProblem(.notFound)
                #expect(!response.text.contains("Sales"))
            }
            try await get(client, fixture.tenant, "/surveys/999999999/report").expectProblem(.notFound)
            try await get(client, fixture.tenant, "/surveys/abc/report").expectProblem(.badRequest)
            // And the intruder's own company report sees none of it.
            let own = try await get(client, intruder, "/report", Self.march)
            expectCounts(own.object, ReportCounts())
            let anonymous = try await client.send(.get, "\(base)/report")
            anonymous.expectProblem(.unauthorized)
        }
    }

    @Test(arguments: [
        ("startDate", "yesterday", "/report"), ("endDate", "2026-02-30", "/report"), ("timezone", "Mars/Olympus", "/report"),
        ("segmentMode", "SOME", "/report"), ("channel", "FAX", "/report"), ("groupBy", "country", "/report"),
        ("interval", "hour", "/report/trend"), ("segments", "a,,b", "/report"), ("startdate", "2026-01-01", "/report"),
        ("interval", "day", "/report"), ("groupBy", "survey", "/report/trend"), ("segments", "a\u{0}b", "/report"),
        ("segments", "\u{0}", "/report/trend"),
    ])
    func badParametersAreNamed(_ name: String, _ value: String, _ path: String) async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            let response = try await get(client, tenant, path, [(name, value)])
            response.expectProblem(.badRequest)
            #expect(response.errorFields.contains(name), "\(response.text)")
        }
    }

    @Test func badPeriodsAndLimits() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            // Well-formed parameters that together break a rule: 422.
            let reversed = try await get(client, tenant, "/report", [("startDate", "2026-03-02"), ("endDate", "2026-03-01")])
            reversed.expectProblem(.unprocessableContent)
            #expect(reversed.object["type"] as? String == "/problems/rule-violation")
            #expect(reversed.errorFields == ["startDate"])
            let long = try await get(client, tenant, "/report", [("startDate", "2020-01-01"), ("endDate", "2025-06-01")])
            long.expectProblem(.unprocessableContent)
            #expect(long.errorFields == ["endDate"])
            // The last day of year 9999 would end the period in year 10000.
            let far = try await get(client, tenant, "/report", [("startDate", "9999-01-01"), ("endDate", "9999-12-31")])
            far.expectProblem(.unprocessableContent)
            #expect(far.errorFields == ["endDate"])
            // A malformed parameter beside a broken rule: 400, listing both.
            let both = try await get(client, tenant, "/report", [("startDate", "2026-03-02"), ("endDate", "2026-03-01"), ("channel", "FAX")])
            both.expectProblem(.badRequest)
            #expect(Set(both.errorFields) == ["startDate", "channel"])
            let segments = try await get(client, tenant, "/report", [("segments", (0...20).map { "s\($0)" }.joined(separator: ","))])
            #expect(segments.errorFields == ["segments"])
            // 21 values of the parameter, even empty or repeated ones (schemathesis found 23 accepted).
            let repeated = try await get(client, tenant, "/report", (0...20).map { ("segments", $0 < 3 ? "" : "a") })
            repeated.expectProblem(.badRequest)
            #expect(repeated.errorFields == ["segments"])
            let twice = try await get(client, tenant, "/report", [("startDate", "2026-01-01"), ("startDate", "2026-01-02")])
            #expect(twice.errorFields == ["startDate"])
            let buckets = try await get(client, tenant, "/report/trend", [("startDate", "2024-01-01"), ("endDate", "2025-06-01"), ("interval", "day")])
            buckets.expectProblem(.unprocessableContent)
            #expect(buckets.errorFields == ["interval"])
        }
    }

    /// The reference's example end to end: a survey sent through the API, its SMS sent,
    /// the reply 9 recorded, and the report of the survey.
    @Test func sentAndAnsweredThroughTheProduct() async throws {
        let tenant = try await harness.company()
        let phone = "+3247\(UInt32.random(in: 1_000_000...9_999_999))"
        try await harness.test { client in
            let created = try await client.send(.post, "\(base)/surveys", headers: tenant.headers, body: #"{"name":"waffles","interactionType":"general","questions":[{"body":"0-10?","language":"en"}]}"#)
            let surveyID = created.object["id"] as? Int ?? 0
            let sent = try await client.send(.post, "\(base)/surveys/\(surveyID)/send", headers: tenant.headers, body: #"{"requests":[{"channel":"SMS","destination":"\#(phone)","segments":["hxsyqosx"]}]}"#)
            #expect(sent.status == .ok || sent.status == .created || sent.status == .accepted, "\(sent.text)")
            // What the worker does once the provider accepted the message.
            try await harness.superuser().withConnection { connection in
                try await connection.query(
                    "UPDATE survey_requests SET status = 'sent', sent_at = now(), respond_by = now() + interval '1 hour' WHERE company_id = \(tenant.id)")
            }
            let hash = Harness.hasher.hash(PhoneNumber(e164: phone)!)
            let outcome = try await ReplyRepository(database: harness.database).recordReply(.score(9), from: hash, messageID: "SM\(UUID().uuidString)")
            guard case .scored = outcome else {
                Issue.record("reply not recorded: \(outcome)")
                return
            }
            let report = try await get(client, tenant, "/surveys/\(surveyID)/report", [("segments", "hxsyqosx,ifywjutr"), ("segmentMode", "ANY"), ("channel", "SMS")])
            #expect(report.text.contains(#""nps":{"promoters":1,"detractors":0,"score":100,"#), "\(report.text)")
            expectCounts(report.object, ReportCounts(requests: 1, good: 1, promoters: 1))
        }
    }

    /// Deleting a survey removes its requests, and the reports forget them.
    @Test func deletedSurveysLeaveTheReports() async throws {
        let (fixture, sales, _) = try await knownDataset()
        try await harness.test { client in
            let deleted = try await client.send(.delete, "\(base)/surveys/\(sales.id)", headers: fixture.tenant.headers)
            #expect(deleted.status == .noContent)
            let response = try await get(client, fixture.tenant, "/report", Self.march)
            expectCounts(response.object, ReportCounts(requests: 1, good: 1, promoters: 1))
            try await ReportFixture.compact(harness.superuser(), cells: 10_000)
            let compacted = try await get(client, fixture.tenant, "/report", Self.march)
            expectCounts(compacted.object, ReportCounts(requests: 1, good: 1, promoters: 1))
        }
    }
}

/// A report that runs past the session's statement_timeout is the server's limit, not the
/// client's fault: 503 with Retry-After, never 500.
@Suite struct ReportTimeoutTests {
    @Test func aStatementTimeoutAnswers503WithRetryAfter() async throws {
        let url = try await TestDatabase.migratedScratchDatabase("timeout")
        // The company is made under the default timeout: on a loaded machine its creation alone
        // has taken more than the one second this test gives the report.
        let setup = Database(client: Database.applicationPool(url: url, applicationName: "surveyd-setup", maximumConnections: 1, logger: TestDatabase.logger))
        let (_, _, token) = try await CompanyRepository(database: setup).create(name: "Slow", settings: .alwaysOpen)
        await setup.client.shutDown()
        let database = Database(client: Database.applicationPool(
            url: url, applicationName: "surveyd-serve", maximumConnections: 2, statementTimeout: .seconds(1), logger: TestDatabase.logger))
        // Another session holds the rollups, so the report waits until its timeout.
        let blocker = try await TestDatabase.connect(url: url)
        try await blocker.simpleQuery("BEGIN; LOCK TABLE report_rollups IN ACCESS EXCLUSIVE MODE")
        let application = Application(router: buildRouter(configuration: Harness.configuration(), database: database))
        try await application.testContract { client in
            let response = try await client.send(.get, "\(base)/report", headers: [.authorization: "Bearer \(token.secret)"])
            response.expectProblem(.serviceUnavailable)
            #expect(response.headers[.retryAfter] != nil)
        }
        try await blocker.simpleQuery("ROLLBACK")
        await blocker.close()
        await database.client.shutDown()
    }
}

/// A request past the request timeout is stopped: 503 with Retry-After, and its query is
/// cancelled on the server rather than left to run.
@Suite struct RequestTimeoutTests {
    @Test func aSlowRequestIsStoppedAndItsQueryCancelled() async throws {
        let url = try await TestDatabase.migratedScratchDatabase("requesttimeout")
        let name = "surveyd-timeout-\(UInt32.random(in: 0...UInt32.max))"
        let database = Database(client: Database.applicationPool(
            url: url, applicationName: name, maximumConnections: 2, logger: TestDatabase.logger))
        let (_, _, token) = try await CompanyRepository(database: database).create(name: "Slow", settings: .alwaysOpen)
        // Both connections open before the clock starts: on a loaded machine, opening one
        // within the request took more than its half second, and the request then ended
        // waiting for a connection (503 unavailable), not on its statement.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<2 {
                group.addTask { try await database.client.withConnection { _ in try await Task.sleep(for: .milliseconds(200)) } }
            }
            try await group.waitForAll()
        }
        let blocker = try await TestDatabase.connect(url: url)
        try await blocker.simpleQuery("BEGIN; LOCK TABLE report_rollups IN ACCESS EXCLUSIVE MODE")
        var configuration = Harness.configuration()
        configuration.limits.requestTimeout = .milliseconds(500)
        let application = Application(router: buildRouter(configuration: configuration, database: database))
        try await application.testContract { client in
            let start = ContinuousClock.now
            let response = try await client.send(.get, "\(base)/report", headers: [.authorization: "Bearer \(token.secret)"])
            response.expectProblem(.serviceUnavailable)
            #expect(response.object["type"] as? String == "/problems/timeout")
            #expect(response.headers[.retryAfter] == "5")
            #expect(ContinuousClock.now - start < .seconds(3), "the statement timeout (30 s) did not decide it")
        }
        // Nothing of ours still waits on the lock.
        let waiting = try await blocker.query(
            "SELECT count(*)::int FROM pg_stat_activity WHERE application_name = \(name) AND state = 'active'"
        ).one().decode(Int.self)
        #expect(waiting == 0)
        try await blocker.simpleQuery("ROLLBACK")
        await blocker.close()
        await database.client.shutDown()
    }
}
