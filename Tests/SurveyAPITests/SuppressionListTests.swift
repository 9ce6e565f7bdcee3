import Foundation
import HTTPTypes
import HummingbirdTesting
import Postgres
import SurveyDomain
import SurveyStorage
import Testing

/// `POST/DELETE /opt-outs`: a company's own suppression list, kept as keyed hashes, binding
/// that company only.
@Suite struct SuppressionListTests {
    let harness: Harness
    init() async throws { harness = try await Harness() }

    func status(_ response: TestResponse) -> String? {
        let result = (response.object["results"] as? [[String: Any]])?.first
        return (result?["reason"] as? String) ?? (result?["status"] as? String)
    }

    @Test func aSuppressedNumberIsSkippedForThisCompanyOnly() async throws {
        let tenant = try await harness.company()
        let other = try await harness.company()
        let phone = SendAPITests.phone()
        try await harness.test { client in
            let survey = try await client.createSurvey(for: tenant)
            let otherSurvey = try await client.createSurvey(for: other)
            let added = try await client.send(.post, "\(base)/opt-outs", headers: tenant.headers, body: #"{"destination":"\#(phone)"}"#)
            #expect(added.status == .noContent, "\(added.text)")
            let again = try await client.send(.post, "\(base)/opt-outs", headers: tenant.headers, body: #"{"destination":"\#(phone)"}"#)
            #expect(again.status == .noContent, "adding twice is fine")

            // Only the keyed hash is stored.
            let stored = try await harness.superuser().withConnection { connection in
                try await connection.query("SELECT destination_hash FROM company_opt_outs WHERE company_id = \(tenant.id)")
                    .map { try $0.decode(Data.self) }
            }
            #expect(stored == [Harness.hasher.hash(PhoneNumber(e164: phone)!)])

            let body = #"{"requests":[{"channel":"SMS","destination":"\#(phone)"}]}"#
            let skipped = try await client.send(.post, "\(base)/surveys/\(survey)/send", headers: tenant.headers, body: body)
            #expect(status(skipped) == "opted-out", "\(skipped.text)")
            let elsewhere = try await client.send(.post, "\(base)/surveys/\(otherSurvey)/send", headers: other.headers, body: body)
            #expect(status(elsewhere) == "queued", "another company's list does not bind this one")

            let removed = try await client.send(.delete, "\(base)/opt-outs", headers: tenant.headers, body: #"{"destination":"\#(phone)"}"#)
            #expect(removed.status == .noContent)
            let gone = try await client.send(.delete, "\(base)/opt-outs", headers: tenant.headers, body: #"{"destination":"\#(phone)"}"#)
            gone.expectProblem(.notFound)
            #expect(try await harness.count("company_opt_outs", company: tenant.id) == 0)
        }
    }

    @Test func badInputIsRefusedAndChangesNothing() async throws {
        let tenant = try await harness.company()
        let reader = try await harness.token(for: tenant, scope: .read)
        try await harness.test { client in
            for body in [#"{}"#, #"{"destination":"0032472"}"#, #"{"destination":32472306705}"#, #"{"destination":"+32472306705","name":"x"}"#] {
                let response = try await client.send(.post, "\(base)/opt-outs", headers: tenant.headers, body: body)
                response.expectProblem(.badRequest)
            }
            try await client.send(.post, "\(base)/opt-outs", headers: reader, body: #"{"destination":"+32472306705"}"#)
                .expectProblem(.forbidden)
            #expect(try await harness.count("company_opt_outs", company: tenant.id) == 0)
        }
    }
}
