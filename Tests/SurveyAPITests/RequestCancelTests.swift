import Foundation
import HTTPTypes
import HummingbirdTesting
import Postgres
import SurveyDomain
import SurveyStorage
import Testing

/// `DELETE /requests/{id}`: a request no worker has picked up is withdrawn whole; one past
/// that point is refused with where it stands, and nothing changes.
@Suite struct RequestCancelTests {
    let harness: Harness
    init() async throws { harness = try await Harness() }

    func sendOne(_ client: any TestClientProtocol, tenant: Tenant, survey: Int, phone: String) async throws -> (TestResponse, Int?) {
        let response = try await client.send(
            .post, "\(base)/surveys/\(survey)/send", headers: tenant.headers,
            body: #"{"requests":[{"channel":"SMS","destination":"\#(phone)"}]}"#)
        let result = (response.object["results"] as? [[String: Any]])?.first
        return (response, result?["requestId"] as? Int)
    }

    func queuedToday(_ client: any TestClientProtocol, _ tenant: Tenant) async throws -> Int? {
        try await client.send(.get, "\(base)/usage", headers: tenant.headers).object["smsQueuedToday"] as? Int
    }

    @Test func cancellingWithdrawsTheJobFreesTheNumberAndGivesTheMessageBack() async throws {
        let tenant = try await harness.company()
        let other = try await harness.company()
        let phone = SendAPITests.phone()
        try await harness.test { client in
            let survey = try await client.createSurvey(for: tenant)
            let (_, queued) = try await sendOne(client, tenant: tenant, survey: survey, phone: phone)
            let id = try #require(queued)
            #expect(try await queuedToday(client, tenant) == 1)
            // The number is busy for everyone while the request is open.
            let otherSurvey = try await client.createSurvey(for: other)
            let (busy, _) = try await sendOne(client, tenant: other, survey: otherSurvey, phone: phone)
            #expect((busy.object["results"] as? [[String: Any]])?.first?["reason"] as? String == "destination-busy", "\(busy.text)")

            let cancelled = try await client.send(.delete, "\(base)/requests/\(id)", headers: tenant.headers)
            #expect(cancelled.status == .noContent, "\(cancelled.text)")
            #expect(cancelled.text.isEmpty)

            let request = try await client.send(.get, "\(base)/requests/\(id)", headers: tenant.headers).object
            #expect(request["status"] as? String == "cancelled")
            #expect(request["failureReason"] is NSNull)
            #expect(try await harness.count("sms_jobs", company: tenant.id) == 0)
            #expect(try await queuedToday(client, tenant) == 0)
            // The number is free at once: another company's survey goes out.
            let (free, _) = try await sendOne(client, tenant: other, survey: otherSurvey, phone: phone)
            #expect((free.object["results"] as? [[String: Any]])?.first?["status"] as? String == "queued", "\(free.text)")
            // A cancelled survey never reached the phone: it does not count as surveyed.
            let (again, _) = try await sendOne(client, tenant: tenant, survey: survey, phone: SendAPITests.phone())
            #expect(again.status == .accepted)

            // Cancelling again: 409, naming where it stands.
            let twice = try await client.send(.delete, "\(base)/requests/\(id)", headers: tenant.headers)
            twice.expectProblem(.conflict)
            #expect((twice.object["errors"] as? [[String: Any]])?.first?["message"] as? String == "cancelled", "\(twice.text)")
            #expect(twice.errorFields == ["status"])
        }
    }

    @Test func aClaimedOrSentRequestCannotBeCancelled() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            let survey = try await client.createSurvey(for: tenant)
            let (_, claimedID) = try await sendOne(client, tenant: tenant, survey: survey, phone: SendAPITests.phone())
            let (_, sentID) = try await sendOne(client, tenant: tenant, survey: survey, phone: SendAPITests.phone())
            let claimed = try #require(claimedID)
            let sent = try #require(sentID)
            // A worker's claim, and a worker's record of a send.
            try await harness.superuser().withConnection { connection in
                try await connection.query(
                    "UPDATE sms_jobs SET leased_until = now() + interval '1 minute' WHERE company_id = \(tenant.id) AND request_id = \(claimed)")
                try await connection.query("DELETE FROM sms_jobs WHERE company_id = \(tenant.id) AND request_id = \(sent)")
                try await connection.query(
                    "UPDATE survey_requests SET status = 'sent', sent_at = now(), respond_by = now() + interval '3 days' WHERE company_id = \(tenant.id) AND request_id = \(sent)")
            }
            let handingOver = try await client.send(.delete, "\(base)/requests/\(claimed)", headers: tenant.headers)
            handingOver.expectProblem(.conflict)
            #expect((handingOver.object["detail"] as? String)?.contains("being handed to the provider") == true, "\(handingOver.text)")
            let tooLate = try await client.send(.delete, "\(base)/requests/\(sent)", headers: tenant.headers)
            tooLate.expectProblem(.conflict)
            #expect((tooLate.object["errors"] as? [[String: Any]])?.first?["message"] as? String == "sent")

            // Nothing changed: the claimed job is still there, both keep their status.
            #expect(try await harness.count("sms_jobs", company: tenant.id) == 1)
            #expect(try await client.send(.get, "\(base)/requests/\(claimed)", headers: tenant.headers).object["status"] as? String == "queued")
            #expect(try await client.send(.get, "\(base)/requests/\(sent)", headers: tenant.headers).object["status"] as? String == "sent")
            #expect(try await queuedToday(client, tenant) == 2)
        }
    }

    @Test func aReadTokenCannotCancel() async throws {
        let tenant = try await harness.company()
        let reader = try await harness.token(for: tenant, scope: .read)
        try await harness.test { client in
            let survey = try await client.createSurvey(for: tenant)
            let (_, queued) = try await sendOne(client, tenant: tenant, survey: survey, phone: SendAPITests.phone())
            let id = try #require(queued)
            try await client.send(.delete, "\(base)/requests/\(id)", headers: reader).expectProblem(.forbidden)
            #expect(try await client.send(.get, "\(base)/requests/\(id)", headers: reader).object["status"] as? String == "queued")
        }
    }

    @Test func unknownRequestIsNotFound() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            try await client.send(.delete, "\(base)/requests/9000000000", headers: tenant.headers).expectProblem(.notFound)
            try await client.send(.delete, "\(base)/requests/0", headers: tenant.headers).expectProblem(.badRequest)
        }
    }
}
