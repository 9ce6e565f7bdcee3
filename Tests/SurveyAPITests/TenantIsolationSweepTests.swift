import APITestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Postgres
import SurveyAPI
import SurveyDomain
import SurveyStorage
import TestSupport
import Testing
import WebhookSender

/// Every operation of the tenant API, taken from openapi.yaml (so a new one cannot be
/// forgotten), called by one company with another's ids: 404, and nothing of the other
/// company changed. Then every tenant table read as the application role with no tenant
/// set: no rows.
@Suite struct TenantIsolationSweepTests {
    let harness: Harness
    init() async throws { harness = try await Harness() }

    /// A valid body for each operation that takes one, so that only the ownership of the
    /// ids can be why it is refused.
    static let bodies: [String: String] = [
        "POST /survey/1.0.0/surveys/{id}/question": #"{"body":"Wie wahrscheinlich …?","language":"de"}"#,
        "POST /survey/1.0.0/surveys/{id}/send": #"{"requests":[{"channel":"SMS","destination":"+32470999111"}]}"#,
        "PATCH /survey/1.0.0/webhooks/{id}": #"{"enabled":false}"#,
        "POST /survey/1.0.0/webhooks/{id}/rotate-secret": "{}",
        "POST /survey/1.0.0/webhooks/{id}/test": "{}",
        "POST /survey/1.0.0/webhooks/{id}/deliveries/{deliveryId}/retry": "{}",
    ]

    /// Everything of a company the database holds, as text, to compare before and after.
    func snapshot(_ company: CompanyID) async throws -> String {
        try await harness.superuser().withConnection { connection in
            let tables = try await connection.query(
                """
                SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'report_rollups'
                   AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'company_id')
                 ORDER BY 1
                """
            ).map { try $0.decode(String.self) }
            var text = ""
            for table in tables {
                let rows = try await connection.query(
                    "SELECT coalesce(string_agg(t::text, '\n' ORDER BY t::text), '') FROM \(identifier: table) AS t WHERE company_id = \(company)"
                ).one().decode(String.self)
                text += "\(table):\n\(rows)\n"
            }
            return text
        }
    }

    @Test func anotherCompanysIdsAre404EverywhereAndChangeNothing() async throws {
        let victim = try await harness.company()
        let intruder = try await harness.company()
        let intruderAdmin = try await harness.token(for: intruder, scope: .admin)
        let tenantOperations = OpenAPIContract.shared.operations
            .filter { $0.path.hasPrefix("/survey/1.0.0/") && $0.path.contains("{") }
            .map { (path: $0.path, method: $0.method) }
        #expect(tenantOperations.count >= 6, "the contract lost its tenant operations?")
        // Webhook URLs on loopback (a port nothing listens on): the victim's ping fails,
        // leaving a delivery in its log.
        var configuration = Harness.configuration()
        let sender = WebhookSender(configuration: { var c = WebhookSender.Configuration(); c.allowPrivateAddresses = true; return c }(), logger: TestDatabase.logger)
        configuration.companyWebhooks = .init(sender: sender, resolver: SystemHostResolver(), allowPrivateAddresses: true)
        defer { Task { await sender.shutdown() } }
        let victimAdmin = try await harness.token(for: victim, scope: .admin)
        try await harness.test(configuration: configuration) { client in
            let survey = try await client.createSurvey(for: victim)
            let sent = try await client.send(
                .post, "\(base)/surveys/\(survey)/send", headers: victim.headers,
                body: #"{"requests":[{"channel":"SMS","destination":"+32470999222"},{"channel":"EMAIL","destination":"victim@example.com"},{"channel":"VOICE","destination":"+32470999223"}]}"#)
            #expect(sent.status == .accepted)
            let request = try #require((sent.object["results"] as? [[String: Any]])?.first?["requestId"] as? Int)
            let endpoint = try #require(
                try await client.send(
                    .post, "\(base)/webhooks", headers: victimAdmin, body: #"{"url":"http://127.0.0.1:9/hook","events":["request.failed"]}"#
                ).object["id"] as? Int)
            let delivery = try #require(
                try await client.send(.post, "\(base)/webhooks/\(endpoint)/test", headers: victimAdmin).object["deliveryId"] as? Int)
            let before = try await snapshot(victim.id)

            for (path, method) in tenantOperations {
                let key = "\(method) \(path)"
                // Each `{id}` is the victim's own id of that kind.
                let id =
                    path.hasPrefix("/survey/1.0.0/requests/") ? request
                    : path.hasPrefix("/survey/1.0.0/tokens/") ? Int(victim.tokenID.rawValue)
                    : path.hasPrefix("/survey/1.0.0/webhooks/") ? endpoint : survey
                let concrete = path.replacingOccurrences(of: "{id}", with: String(id))
                    .replacingOccurrences(of: "{deliveryId}", with: String(delivery))
                #expect(!concrete.contains("{"), "\(key): a path parameter the sweep does not know")
                let body = Self.bodies[key]
                if method == "POST" { #expect(body != nil, "\(key): the sweep needs a valid body for this operation") }
                // The intruder's token may do everything (admin scope): only ownership can refuse.
                let response = try await client.send(
                    HTTPRequest.Method(method)!, concrete, headers: intruderAdmin, body: body)
                #expect(response.status == .notFound, "\(key) with another company's id: \(response.status) \(response.text)")
            }
            // The lists and reports without ids show the intruder nothing of the victim.
            let list = try await client.send(.get, "\(base)/surveys", headers: intruder.headers)
            #expect(!list.text.contains("victim"))
            let report = try await client.send(.get, "\(base)/report", headers: intruder.headers)
            #expect((report.object["responseStatistics"] as? [String: Any])?["totalRequests"] as? Int == 0, "\(report.text)")
            let requests = try await client.send(.get, "\(base)/requests?format=csv", headers: intruder.headers)
            #expect(requests.status == .ok && requests.text.components(separatedBy: "\r\n").count == 2, "only the header: \(requests.text)")
            let usage = try await client.send(.get, "\(base)/usage", headers: intruder.headers)
            #expect(
                usage.object["smsQueuedToday"] as? Int == 0 && usage.object["emailsQueuedToday"] as? Int == 0
                    && usage.object["callsQueuedToday"] as? Int == 0)

            #expect(try await snapshot(victim.id) == before, "a request of another company changed the victim's data")
        }
    }

    @Test func theApplicationRoleWithoutATenantSeesNoRowOfAnyTenantTable() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            let survey = try await client.createSurvey(for: tenant)
            _ = try await client.send(
                .post, "\(base)/surveys/\(survey)/send", headers: tenant.headers.merging([HTTPField.Name("Idempotency-Key")!: "sweep"]),
                body: #"{"requests":[{"channel":"SMS","destination":"+32470999333"},{"channel":"EMAIL","destination":"sweep@example.com"},{"channel":"VOICE","destination":"+32470999334"}]}"#)
        }
        // Tables the role may not read at all (early_replies: it only adds to them) are
        // closed to it whatever the tenant; the others must show nothing without one.
        let all = try await harness.superuser().withConnection { connection in
            try await connection.query(
                """
                SELECT DISTINCT c.relname::text, has_table_privilege('survey_app', c.oid, 'SELECT')
                  FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE p.polname = 'tenant_isolation' ORDER BY 1
                """
            ).map { try $0.decode((String, Bool).self) }
        }
        let tables = all.filter(\.1).map(\.0)
        #expect(tables.count >= 9, "\(tables)")
        #expect(all.filter { !$0.1 }.map(\.0) == ["early_replies"], "\(all)")
        try await harness.database.client.withConnection { connection in
            for table in tables {
                let count = try await connection.query("SELECT count(*)::int FROM \(identifier: table)").one().decode(Int.self)
                #expect(count == 0, "\(table) shows \(count) rows to the application role with no tenant set")
            }
        }
        // They are there: the superuser sees the tenant's rows.
        #expect(try await harness.count("survey_requests", company: tenant.id) == 3)
        #expect(try await harness.count("idempotency_keys", company: tenant.id) == 1)
    }
}

extension HTTPFields {
    func merging(_ other: HTTPFields) -> HTTPFields {
        var merged = self
        for field in other { merged[field.name] = field.value }
        return merged
    }
}
