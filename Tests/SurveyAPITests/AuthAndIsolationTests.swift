import Foundation
import HTTPTypes
import HummingbirdTesting
import Postgres
import SurveyDomain
import SurveyStorage
import Testing

/// Bearer tokens, and one company never reaching another's data (OWASP API1, BOLA).
@Suite struct AuthAndIsolationTests {
    let harness: Harness
    init() async throws { harness = try await Harness() }

    @Test func everyAuthenticationFailureLooksTheSame() async throws {
        let tenant = try await harness.company()
        let revoked = try await harness.company()
        try await CompanyRepository(database: harness.database).revokeToken(revoked.tokenID, company: revoked.id)
        let variants: [HTTPFields] = [
            [:],
            [.authorization: ""],
            [.authorization: "Bearer"],
            [.authorization: "Basic \(Data("a:b".utf8).base64EncodedString())"],
            [.authorization: "Token \(tenant.token)"],
            [.authorization: "Bearer not-a-token"],
            [.authorization: "Bearer nps_live_" + String(repeating: "A", count: 43)],  // well-formed, unknown
            [.authorization: "Bearer \(tenant.token)x"],
            [.authorization: "Bearer \(revoked.token)"],
        ]
        try await harness.test { client in
            var bodies = Set<String>()
            for headers in variants {
                let response = try await client.send(.get, "\(base)/surveys", headers: headers)
                response.expectProblem(.unauthorized)
                #expect(response.headers[.wwwAuthenticate] == #"Bearer realm="surveyd""#)
                bodies.insert(response.text)
            }
            #expect(bodies.count == 1)
            // The scheme is case-insensitive (RFC 7235).
            let lower = try await client.send(.get, "\(base)/surveys", headers: [.authorization: "bearer \(tenant.token)"])
            #expect(lower.status == .ok)
        }
    }

    @Test func lastUsedAtIsUpdatedAtMostOnceAMinute() async throws {
        let tenant = try await harness.company()
        func lastUsed() async throws -> Date? {
            try await harness.superuser().withConnection { connection in
                try await connection.query("SELECT last_used_at FROM api_tokens WHERE company_id = \(tenant.id)")
                    .one().decode(Date?.self, column: "last_used_at")
            }
        }
        #expect(try await lastUsed() == nil)
        try await harness.test { client in
            _ = try await client.send(.get, "\(base)/surveys", headers: tenant.headers)
        }
        let first = try #require(try await lastUsed())
        try await harness.test { client in
            _ = try await client.send(.get, "\(base)/surveys", headers: tenant.headers)
        }
        #expect(try await lastUsed() == first)
        // Once it is over a minute old, the next use moves it.
        try await harness.superuser().withConnection { connection in
            try await connection.query(
                "UPDATE api_tokens SET last_used_at = now() - interval '61 seconds' WHERE company_id = \(tenant.id)")
        }
        try await harness.test { client in
            _ = try await client.send(.get, "\(base)/surveys", headers: tenant.headers)
        }
        #expect(try #require(try await lastUsed()) > Date().addingTimeInterval(-10))
    }

    @Test func tokensAreStoredOnlyAsHashes() async throws {
        let tenant = try await harness.company()
        let row = try await harness.superuser().withConnection { connection in
            try await connection.query("SELECT row_to_json(t)::text FROM api_tokens t WHERE company_id = \(tenant.id)").one()
        }
        let stored = try row.decode(String.self)
        let secretPart = String(tenant.token.dropFirst(APIToken.hintLength))
        #expect(!stored.contains(secretPart))
        #expect(stored.contains(APIToken(secret: tenant.token).hash.map { String(format: "%02x", $0) }.joined()))
    }

    /// Company A's token against every endpoint with company B's ids: 404, and B unchanged.
    @Test func bolaMatrix() async throws {
        let a = try await harness.company()
        let b = try await harness.company()
        try await harness.test { client in
            let created = try await client.send(.post, "\(base)/surveys", headers: b.headers, body: SurveyAPITests.waffles)
            let id = try #require(created.object["id"] as? Int)
            let before = try await client.send(.get, "\(base)/surveys/\(id)", headers: b.headers).text

            try await client.send(.get, "\(base)/surveys/\(id)", headers: a.headers).expectProblem(.notFound)
            try await client.send(.delete, "\(base)/surveys/\(id)", headers: a.headers).expectProblem(.notFound)
            try await client.send(
                .post, "\(base)/surveys/\(id)/question", headers: a.headers, body: #"{"body":"x","language":"de"}"#
            ).expectProblem(.notFound)
            // The 404 for another company's survey is the same as for one that never existed.
            let foreign = try await client.send(.get, "\(base)/surveys/\(id)", headers: a.headers).object
            let missing = try await client.send(.get, "\(base)/surveys/999999999", headers: a.headers).object
            #expect(foreign["title"] as? String == missing["title"] as? String)
            #expect((foreign["detail"] as? String)?.replacingOccurrences(of: "\(id)", with: "N")
                == (missing["detail"] as? String)?.replacingOccurrences(of: "999999999", with: "N"))

            let list = try await client.send(.get, "\(base)/surveys", headers: a.headers)
            #expect(list.array.isEmpty)
            let after = try await client.send(.get, "\(base)/surveys/\(id)", headers: b.headers).text
            #expect(after == before)
        }
        #expect(try await harness.count("surveys", company: a.id) == 0)
        #expect(try await harness.count("questions", company: b.id) == 1)
    }
}

/// The operator's admin API.
@Suite struct AdminAPITests {
    let harness: Harness
    init() async throws { harness = try await Harness() }

    var admin: HTTPFields { [.authorization: "Bearer \(Harness.adminToken)", .contentType: "application/json"] }

    @Test func disabledWithoutAnAdminToken() async throws {
        try await harness.test(adminToken: nil) { client in
            try await client.send(.post, "/admin/companies", headers: admin, body: #"{"name":"x"}"#).expectProblem(.notFound)
        }
    }

    @Test func wrongAdminTokenIs401() async throws {
        try await harness.test { client in
            for authorization in ["", "Bearer wrong", "Bearer \(Harness.adminToken)x", "Basic \(Harness.adminToken)"] {
                let headers: HTTPFields = [.authorization: authorization, .contentType: "application/json"]
                try await client.send(.post, "/admin/companies", headers: headers, body: #"{"name":"x"}"#)
                    .expectProblem(.unauthorized)
            }
            // A company's API token is not an admin token.
            let tenant = try await harness.company()
            try await client.send(.post, "/admin/companies", headers: tenant.headers, body: #"{"name":"x"}"#)
                .expectProblem(.unauthorized)
        }
    }

    @Test func companyAndTokenLifecycle() async throws {
        try await harness.test { client in
            let created = try await client.send(.post, "/admin/companies", headers: admin, body: #"{"name":"Gaufres SA"}"#)
            #expect(created.status == .created)
            #expect(Array(created.object.keys).sorted() == ["createdAt", "dailyEmailCap", "dailySmsCap", "dailyVoiceCap", "id", "name", "quietHours", "requestRateLimit", "resurveyDays", "timezone", "token", "voiceCallAttempts", "voiceRetryMinutes"])
            #expect(created.object["resurveyDays"] as? Int == 30)
            #expect(created.object["dailySmsCap"] as? Int == 10_000)
            #expect(created.text.hasPrefix(#"{"id":"#))
            let companyID = try #require(created.object["id"] as? Int)
            let firstToken = try #require(created.object["token"] as? String)
            #expect(created.object["name"] as? String == "Gaufres SA")
            let createdAt = try #require(created.object["createdAt"] as? String)
            #expect(createdAt.hasSuffix("+00:00"))
            #expect(try Date(createdAt, strategy: .iso8601) > Date().addingTimeInterval(-60))

            let first: HTTPFields = [.authorization: "Bearer \(firstToken)"]
            #expect(try await client.send(.get, "\(base)/surveys", headers: first).status == .ok)

            let second = try await client.send(.post, "/admin/companies/\(companyID)/tokens", headers: admin)
            #expect(second.status == .created)
            #expect(Array(second.object.keys).sorted() == ["id", "scope", "token"])
            #expect(second.object["scope"] as? String == "write")
            let secondID = try #require(second.object["id"] as? Int)
            let secondToken = try #require(second.object["token"] as? String)
            #expect(secondToken != firstToken)
            let secondHeaders: HTTPFields = [.authorization: "Bearer \(secondToken)"]
            #expect(try await client.send(.get, "\(base)/surveys", headers: secondHeaders).status == .ok)

            let revoked = try await client.send(.delete, "/admin/companies/\(companyID)/tokens/\(secondID)", headers: admin)
            #expect(revoked.status == .noContent)
            try await client.send(.get, "\(base)/surveys", headers: secondHeaders).expectProblem(.unauthorized)
            #expect(try await client.send(.get, "\(base)/surveys", headers: first).status == .ok)

            try await client.send(.post, "/admin/companies/999999999/tokens", headers: admin).expectProblem(.notFound)
            try await client.send(.delete, "/admin/companies/999999999/tokens/\(secondID)", headers: admin).expectProblem(.notFound)
            // A token id of another company is unknown for this one.
            let other = try await harness.company()
            try await client.send(.delete, "/admin/companies/\(companyID)/tokens/\(other.tokenID)", headers: admin)
                .expectProblem(.notFound)
            try await client.send(.delete, "/admin/companies/abc/tokens/1", headers: admin).expectProblem(.badRequest)
        }
    }

    @Test func companyNameIsValidated() async throws {
        try await harness.test { client in
            for body in ["{}", #"{"name":""}"#, #"{"name":3}"#, #"{"name":"\#(String(repeating: "x", count: 201))"}"#] {
                let response = try await client.send(.post, "/admin/companies", headers: admin, body: body)
                response.expectProblem(.badRequest)
                #expect(response.errorFields == ["name"])
            }
        }
    }
}
