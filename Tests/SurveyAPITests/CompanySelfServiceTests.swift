import Foundation
import HTTPTypes
import HummingbirdTesting
import Postgres
import SurveyDomain
import SurveyStorage
import Testing

/// `/tokens` and `/settings` with a token of scope `admin`: the company's administrator
/// manages its tokens and settings; the cap and the rate limit stay the operator's.
@Suite struct CompanySelfServiceTests {
    let harness: Harness
    init() async throws { harness = try await Harness() }

    @Test func onlyAnAdminTokenManagesTokensAndSettings() async throws {
        let tenant = try await harness.company()
        let reader = try await harness.token(for: tenant, scope: .read)
        try await harness.test { client in
            for headers in [tenant.headers, reader] {
                for (method, path, body) in [
                    (HTTPRequest.Method.get, "tokens", nil), (.post, "tokens", #"{"scope":"read"}"#), (.delete, "tokens/\(tenant.tokenID)", nil),
                    (.get, "settings", nil), (.patch, "settings", #"{"resurveyDays":1}"#),
                ] as [(HTTPRequest.Method, String, String?)] {
                    let response = try await client.send(method, "\(base)/\(path)", headers: headers, body: body)
                    response.expectProblem(.forbidden)
                }
            }
            // Nothing changed: the write token still works, the settings are the defaults.
            #expect(try await client.send(.get, "\(base)/surveys", headers: tenant.headers).status == .ok)
            #expect(try await CompanyRepository(database: harness.database).find(tenant.id)?.settings.resurveyDays == 30)
        }
    }

    @Test func anAdministratorIssuesListsAndRevokesTokens() async throws {
        let tenant = try await harness.company()
        let other = try await harness.company()
        let admin = try await harness.token(for: tenant, scope: .admin)
        try await harness.test { client in
            // An admin token does everything a write token does.
            #expect(try await client.createSurvey(for: Tenant(id: tenant.id, tokenID: tenant.tokenID, token: String(admin[.authorization]!.dropFirst(7)))) > 0)

            let created = try await client.send(.post, "\(base)/tokens", headers: admin, body: #"{"scope":"read"}"#)
            #expect(created.status == .created, "\(created.text)")
            #expect(created.object["scope"] as? String == "read")
            let secret = try #require(created.object["token"] as? String)
            let id = try #require(created.object["id"] as? Int)
            let readHeaders: HTTPFields = [.authorization: "Bearer \(secret)", .contentType: "application/json"]
            #expect(try await client.send(.get, "\(base)/surveys", headers: readHeaders).status == .ok)
            try await client.send(.post, "\(base)/surveys", headers: readHeaders, body: "{}").expectProblem(.forbidden)
            // A write token by default; never an admin one from here.
            let write = try await client.send(.post, "\(base)/tokens", headers: admin)
            #expect(write.object["scope"] as? String == "write")
            let refused = try await client.send(.post, "\(base)/tokens", headers: admin, body: #"{"scope":"admin"}"#)
            refused.expectProblem(.badRequest)
            #expect(refused.errorFields == ["scope"])

            let list = try await client.send(.get, "\(base)/tokens", headers: admin)
            let tokens = list.object["tokens"] as? [[String: Any]] ?? []
            #expect(tokens.count == 4, "\(list.text)")
            #expect(!list.text.contains(secret), "never a secret")
            #expect(Set(tokens.compactMap { $0["scope"] as? String }) == ["read", "write", "admin"])

            #expect(try await client.send(.delete, "\(base)/tokens/\(id)", headers: admin).status == .noContent)
            try await client.send(.get, "\(base)/surveys", headers: readHeaders).expectProblem(.unauthorized)
            // Another company's token: not found, and still working.
            try await client.send(.delete, "\(base)/tokens/\(other.tokenID)", headers: admin).expectProblem(.notFound)
            #expect(try await client.send(.get, "\(base)/surveys", headers: other.headers).status == .ok)
        }
    }

    @Test func theLastAdminTokenCannotBeRevoked() async throws {
        let tenant = try await harness.company()
        let first = try await harness.token(for: tenant, scope: .admin)
        try await harness.test { client in
            let tokens = try await client.send(.get, "\(base)/tokens", headers: first).object["tokens"] as? [[String: Any]] ?? []
            let firstID = try #require(tokens.first { $0["scope"] as? String == "admin" }?["id"] as? Int)
            let last = try await client.send(.delete, "\(base)/tokens/\(firstID)", headers: first)
            last.expectProblem(.conflict)
            #expect(try await client.send(.get, "\(base)/tokens", headers: first).status == .ok, "still working")

            // With a second one (from the operator), the first may go; then the second is the last.
            let second = try await harness.token(for: tenant, scope: .admin)
            #expect(try await client.send(.delete, "\(base)/tokens/\(firstID)", headers: second).status == .noContent)
            let all = try await client.send(.get, "\(base)/tokens", headers: second).object["tokens"] as? [[String: Any]] ?? []
            let secondID = try #require(all.last { $0["scope"] as? String == "admin" }?["id"] as? Int)
            try await client.send(.delete, "\(base)/tokens/\(secondID)", headers: second).expectProblem(.conflict)
        }
    }

    @Test func settingsAreReadAndPatchedButNotTheOperatorsLimits() async throws {
        let tenant = try await harness.company()
        let admin = try await harness.token(for: tenant, scope: .admin)
        try await harness.test { client in
            let read = try await client.send(.get, "\(base)/settings", headers: admin)
            #expect(read.status == .ok)
            #expect(read.text == #"{"resurveyDays":30,"quietHours":null,"timezone":"Europe/Brussels","dailySmsCap":10000,"dailyEmailCap":50000,"dailyVoiceCap":1000,"voiceCallAttempts":2,"voiceRetryMinutes":60,"requestRateLimit":null}"#)
            let patched = try await client.send(
                .patch, "\(base)/settings", headers: admin,
                body: #"{"resurveyDays":14,"quietHours":{"start":"20:00","end":"08:00"},"timezone":"Europe/Paris","voiceCallAttempts":3,"voiceRetryMinutes":30}"#)
            #expect(patched.text == #"{"resurveyDays":14,"quietHours":{"start":"20:00","end":"08:00"},"timezone":"Europe/Paris","dailySmsCap":10000,"dailyEmailCap":50000,"dailyVoiceCap":1000,"voiceCallAttempts":3,"voiceRetryMinutes":30,"requestRateLimit":null}"#)

            for (body, fields) in [
                (#"{"dailySmsCap":1000000}"#, ["dailySmsCap"]), (#"{"requestRateLimit":null}"#, ["requestRateLimit"]),
                (#"{"dailyVoiceCap":5}"#, ["dailyVoiceCap"]), (#"{"voiceCallAttempts":0,"voiceRetryMinutes":1441}"#, ["voiceCallAttempts", "voiceRetryMinutes"]),
                (#"{"voiceCallAttempts":6}"#, ["voiceCallAttempts"]),
                (#"{}"#, ["body"]), (#"{"resurveyDays":-1,"timezone":"Mars/Olympus"}"#, ["resurveyDays", "timezone"]),
                (#"{"quietHours":{"start":"8pm","end":"08:00"}}"#, ["quietHours.start"]),
            ] {
                let response = try await client.send(.patch, "\(base)/settings", headers: admin, body: body)
                response.expectProblem(.badRequest)
                #expect(response.errorFields.sorted() == fields.sorted(), "\(body): \(response.text)")
            }
            let settings = try await CompanyRepository(database: harness.database).find(tenant.id)?.settings
            #expect(settings?.resurveyDays == 14 && settings?.dailySMSCap == 10_000 && settings?.timeZone == "Europe/Paris")
        }
    }
}
