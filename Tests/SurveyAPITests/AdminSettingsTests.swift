import Foundation
import HTTPTypes
import HummingbirdTesting
import Postgres
import SurveyDomain
import SurveyStorage
import Testing

/// The operator's settings per company, token scopes, and the daily SMS cap they set.
@Suite struct AdminSettingsTests {
    let harness: Harness
    init() async throws { harness = try await Harness() }

    let admin: HTTPFields = [.authorization: "Bearer \(Harness.adminToken)", .contentType: "application/json"]

    @Test func settingsAreReadAndPatched() async throws {
        try await harness.test { client in
            let created = try await client.send(
                .post, "/admin/companies", headers: admin, body: #"{"name":"Frites SA","resurveyDays":7,"dailySmsCap":50}"#)
            #expect(created.status == .created, "\(created.text)")
            let id = try #require(created.object["id"] as? Int)
            #expect(created.object["resurveyDays"] as? Int == 7)
            #expect(created.object["dailySmsCap"] as? Int == 50)

            let read = try await client.send(.get, "/admin/companies/\(id)", headers: admin)
            #expect(read.status == .ok)
            #expect(
                Array(read.object.keys).sorted()
                    == ["createdAt", "dailyEmailCap", "dailySmsCap", "dailyVoiceCap", "id", "name", "quietHours", "requestRateLimit", "resurveyDays", "timezone",
                        "voiceCallAttempts", "voiceRetryMinutes"])
            #expect(read.object["quietHours"] as? [String: String] == ["start": "21:00", "end": "09:00"], "the default")
            #expect(read.object["timezone"] as? String == "Europe/Brussels")

            let patched = try await client.send(.patch, "/admin/companies/\(id)", headers: admin, body: #"{"dailySmsCap":0}"#)
            #expect(patched.status == .ok, "\(patched.text)")
            #expect(patched.object["dailySmsCap"] as? Int == 0)
            #expect(patched.object["resurveyDays"] as? Int == 7, "a member left out stays as it was")

            let mergePatch: HTTPFields = [.authorization: admin[.authorization]!, .contentType: "application/merge-patch+json"]
            let again = try await client.send(.patch, "/admin/companies/\(id)", headers: mergePatch, body: #"{"resurveyDays":0}"#)
            #expect(again.object["resurveyDays"] as? Int == 0)
            let stored = try await CompanyRepository(database: harness.database).find(CompanyID(rawValue: Int64(id)))
            #expect(stored?.settings == CompanySettings(resurveyDays: 0, dailySMSCap: 0))

            // Quiet hours: set, then off; the time zone they are read in.
            let quiet = try await client.send(
                .patch, "/admin/companies/\(id)", headers: admin, body: #"{"quietHours":{"start":"22:30","end":"07:15"},"timezone":"America/New_York"}"#)
            #expect(quiet.object["quietHours"] as? [String: String] == ["start": "22:30", "end": "07:15"], "\(quiet.text)")
            #expect(quiet.object["timezone"] as? String == "America/New_York")
            let empty = try await client.send(
                .patch, "/admin/companies/\(id)", headers: admin, body: #"{"quietHours":{"start":"09:00","end":"09:00"}}"#)
            #expect(empty.object["quietHours"] is NSNull, "an empty window is none: \(empty.text)")
            _ = try await client.send(.patch, "/admin/companies/\(id)", headers: admin, body: #"{"quietHours":{"start":"22:30","end":"07:15"}}"#)
            let off = try await client.send(.patch, "/admin/companies/\(id)", headers: admin, body: #"{"quietHours":null}"#)
            #expect(off.object["quietHours"] is NSNull, "\(off.text)")
            #expect(off.object["timezone"] as? String == "America/New_York", "a member left out stays as it was")
            let reread = try await CompanyRepository(database: harness.database).find(CompanyID(rawValue: Int64(id)))
            #expect(reread?.settings.quietHours == nil && reread?.settings.timeZone == "America/New_York")
        }
    }

    @Test func badSettingsAreRefusedAndChangeNothing() async throws {
        try await harness.test { client in
            let created = try await client.send(.post, "/admin/companies", headers: admin, body: #"{"name":"Moules SA"}"#)
            let id = try #require(created.object["id"] as? Int)
            let cases: [(String, [String])] = [
                (#"{}"#, ["body"]),
                (#"{"dailySmsCap":-1}"#, ["dailySmsCap"]),
                (#"{"dailySmsCap":10000001}"#, ["dailySmsCap"]),
                (#"{"dailySmsCap":1.5}"#, ["dailySmsCap"]),
                (#"{"dailySmsCap":"10"}"#, ["dailySmsCap"]),
                (#"{"resurveyDays":3651,"dailySmsCap":5}"#, ["resurveyDays"]),
                (#"{"dailySMSCap":5}"#, ["dailySMSCap"]),
                (#"{"resurveyDays":5,"name":"renamed"}"#, ["name"]),
                (#"{"quietHours":{"start":"9:00","end":"25:00"}}"#, ["quietHours.start", "quietHours.end"]),
                (#"{"quietHours":{"start":"09:00"}}"#, ["quietHours.end"]),
                (#"{"quietHours":"21:00-09:00"}"#, ["quietHours"]),
                (#"{"quietHours":{"start":"21:00","end":"09:00","days":5}}"#, ["quietHours.days"]),
                (#"{"timezone":"CET"}"#, ["timezone"]),
            ]
            for (body, fields) in cases {
                let response = try await client.send(.patch, "/admin/companies/\(id)", headers: admin, body: body)
                response.expectProblem(.badRequest)
                #expect(response.errorFields == fields, "\(body): \(response.text)")
            }
            let read = try await client.send(.get, "/admin/companies/\(id)", headers: admin)
            #expect(read.object["resurveyDays"] as? Int == 30)
            #expect(read.object["dailySmsCap"] as? Int == 10_000)
            #expect(read.object["name"] as? String == "Moules SA")

            try await client.send(.patch, "/admin/companies/999999999", headers: admin, body: #"{"dailySmsCap":1}"#)
                .expectProblem(.notFound)
            try await client.send(.get, "/admin/companies/999999999", headers: admin).expectProblem(.notFound)
            try await client.send(.get, "/admin/companies/999999999/tokens", headers: admin).expectProblem(.notFound)
            try await client.send(.post, "/admin/companies", headers: admin, body: #"{"name":"x","dailySmsCap":-5}"#)
                .expectProblem(.badRequest)
        }
    }

    @Test func readTokensCannotWrite() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            let surveyID = try await client.createSurvey(for: tenant)

            let issued = try await client.send(
                .post, "/admin/companies/\(tenant.id)/tokens", headers: admin, body: #"{"scope":"read"}"#)
            #expect(issued.status == .created)
            #expect(issued.object["scope"] as? String == "read")
            let readToken = try #require(issued.object["token"] as? String)
            let reader: HTTPFields = [.authorization: "Bearer \(readToken)", .contentType: "application/json"]

            #expect(try await client.send(.get, "\(base)/surveys", headers: reader).status == .ok)
            #expect(try await client.send(.get, "\(base)/surveys/\(surveyID)", headers: reader).status == .ok)
            #expect(try await client.send(.get, "\(base)/report", headers: reader).status == .ok)
            #expect(try await client.send(.get, "\(base)/usage", headers: reader).status == .ok)
            let writes: [(HTTPRequest.Method, String, String?)] = [
                (.post, "\(base)/surveys", #"{"name":"s","interactionType":"care","questions":[{"body":"Q?","language":"en"}]}"#),
                (.delete, "\(base)/surveys/\(surveyID)", nil),
                (.post, "\(base)/surveys/\(surveyID)/question", #"{"body":"V?","language":"fr"}"#),
                (.post, "\(base)/surveys/\(surveyID)/send", #"{"requests":[{"channel":"SMS","destination":"+32470000001"}]}"#),
            ]
            for (method, path, body) in writes {
                let response = try await client.send(method, path, headers: reader, body: body)
                response.expectProblem(.forbidden)
                #expect(response.object["type"] as? String == "/problems/insufficient-scope")
            }
            #expect(try await harness.count("surveys", company: tenant.id) == 1)
            #expect(try await harness.count("survey_requests", company: tenant.id) == 0)

            let listed = try await client.send(.get, "/admin/companies/\(tenant.id)/tokens", headers: admin)
            let tokens = try #require(listed.object["tokens"] as? [[String: Any]])
            #expect(tokens.map { $0["scope"] as? String } == ["write", "read"])
            #expect(tokens.allSatisfy { Set($0.keys) == ["id", "hint", "scope", "createdAt", "lastUsedAt", "revokedAt"] })
            #expect(!listed.text.contains(readToken) && !listed.text.contains(tenant.token), "a listing shows no secret")
            #expect(tokens[1]["lastUsedAt"] is String, "the read token was used")

            // The operator issues admin tokens (the company's own administrator's).
            let adminToken = try await client.send(.post, "/admin/companies/\(tenant.id)/tokens", headers: admin, body: #"{"scope":"admin"}"#)
            #expect(adminToken.status == .created && adminToken.object["scope"] as? String == "admin", "\(adminToken.text)")
            for body in [#"{"scope":"owner"}"#, #"{"scope":null}"#, #"{"scopes":"read"}"#] {
                try await client.send(.post, "/admin/companies/\(tenant.id)/tokens", headers: admin, body: body)
                    .expectProblem(.badRequest)
            }
        }
    }

    @Test func theDailyCapRefusesAWholeCallAndQueuesNothing() async throws {
        let tenant = try await harness.company()
        try await CompanyRepository(database: harness.database).update(tenant.id, CompanySettingsChange(dailySMSCap: 3))
        try await harness.test { client in
            let surveyID = try await client.createSurvey(for: tenant)
            func send(_ phones: [String]) async throws -> TestResponse {
                let items = phones.map { #"{"channel":"SMS","destination":"\#($0)"}"# }.joined(separator: ",")
                return try await client.send(
                    .post, "\(base)/surveys/\(surveyID)/send", headers: tenant.headers, body: #"{"requests":[\#(items)]}"#)
            }
            let phones = (0..<6).map { _ in SendAPITests.phone() }

            let tooMany = try await send(Array(phones[0..<4]))
            tooMany.expectProblem(.tooManyRequests)
            #expect(tooMany.object["type"] as? String == "/problems/daily-sms-cap")
            let retryAfter = try #require(tooMany.headers[.retryAfter].flatMap(Int.init))
            #expect((1...86_400).contains(retryAfter))
            #expect(try await harness.count("survey_requests", company: tenant.id) == 0)
            #expect(try await harness.count("sms_jobs", company: tenant.id) == 0)

            #expect(try await send(Array(phones[0..<2])).status == .accepted)
            // The same number again is skipped (destination busy), so it does not count.
            let skipped = try await send([phones[0]])
            #expect(skipped.status == .accepted, "\(skipped.text)")
            #expect(try await send(Array(phones[2..<4])).status == .tooManyRequests)
            #expect(try await send([phones[2]]).status == .accepted)
            #expect(try await send([phones[3]]).status == .tooManyRequests)
            #expect(try await harness.count("survey_requests", company: tenant.id) == 3)
            #expect(try await harness.count("sms_jobs", company: tenant.id) == 3)

            let usage = try await client.send(.get, "\(base)/usage", headers: tenant.headers)
            #expect(usage.object["dailySmsCap"] as? Int == 3)
            #expect(usage.object["smsQueuedToday"] as? Int == 3)
        }
    }

    @Test func concurrentCallsCannotTogetherPassTheCap() async throws {
        let tenant = try await harness.company()
        try await CompanyRepository(database: harness.database).update(tenant.id, CompanySettingsChange(dailySMSCap: 25))
        let accepted = try await harness.test { client in
            let surveyID = try await client.createSurvey(for: tenant)
            let calls = (0..<10).map { _ in (0..<5).map { _ in #"{"channel":"SMS","destination":"\#(SendAPITests.phone())"}"# } }
            return try await withThrowingTaskGroup(of: Bool.self) { group in
                for items in calls {
                    group.addTask {
                        let response = try await client.send(
                            .post, "\(base)/surveys/\(surveyID)/send", headers: tenant.headers,
                            body: #"{"requests":[\#(items.joined(separator: ","))]}"#)
                        return response.status == .accepted
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
        }
        #expect(accepted == 5)
        #expect(try await harness.count("survey_requests", company: tenant.id) == 25)
    }
}
