import Foundation
import HTTPTypes
import HummingbirdTesting
import Postgres
import SurveyStorage
import SurveyWorker
import Testing

/// Issue 12: a status callback or a reply that arrives before the worker has recorded the
/// send (the provider may call back before its answer to the send reaches us) was answered
/// 2xx and never applied, and the provider does not send it again.
@Suite struct EarlyCallbackTests {
    @Test func callbacksThatOvertakeTheSendAreApplied() async throws {
        let pipeline = try await Pipeline.make("early")
        let tenant = try await pipeline.company()
        let numbers = [phone(), phone(), phone(), phone()]
        try await pipeline.api { client in
            let ids = try await pipeline.send(to: numbers, headers: tenant.headers, client: client)
            // The gateway says it all before answering the send request itself, again after a
            // 5xx as the provider would (on a loaded machine a callback can miss its deadline).
            @Sendable func deliver(_ callback: () async throws -> TestResponse) async {
                for _ in 0..<10 {
                    guard let response = try? await callback(), response.status.code >= 500 else { return }
                }
            }
            pipeline.gateway.setBeforeAnswer { sid, to in
                switch to {
                case numbers[0]:
                    await deliver {
                        try await pipeline.webhook(
                            "/webhooks/twilio/status", [("MessageSid", sid), ("MessageStatus", "delivered")], client: client)
                    }
                    await deliver { try await pipeline.reply(from: to, "9", client: client) }
                case numbers[1]:
                    await deliver {
                        try await pipeline.webhook(
                            "/webhooks/twilio/status", [("MessageSid", sid), ("MessageStatus", "undelivered"), ("ErrorCode", "30003")],
                            client: client)
                    }
                case numbers[2]:
                    await deliver { try await pipeline.reply(from: to, "meh", client: client) }
                    await deliver { try await pipeline.reply(from: to, "8", client: client) }
                    await deliver { try await pipeline.reply(from: to, "2", client: client) }
                default:
                    break
                }
            }
            // Nothing was applied at the time: the requests were still queued.
            try await pipeline.run([pipeline.worker()], alongside: [pipeline.janitor()]) {
                let delivered = try await pipeline.request(ids[0])
                let undelivered = try await pipeline.request(ids[1])
                let scored = try await pipeline.request(ids[2])
                return try await pipeline.jobsLeft() == 0 && delivered.status == "delivered" && delivered.score == 9
                    && undelivered.status == "failed" && scored.score == 8
            }
            let delivered = try await pipeline.request(ids[0])
            #expect(delivered.status == "delivered")
            #expect(delivered.score == 9)
            let undelivered = try await pipeline.request(ids[1])
            #expect(undelivered.status == "failed")
            #expect(undelivered.failure == "undelivered")
            let scored = try await pipeline.request(ids[2])
            #expect(scored.score == 8)
            #expect(scored.badReplies == 1)
            let untouched = try await pipeline.request(ids[3])
            #expect(untouched.status == "sent")
            #expect(untouched.score == nil)
        }
        // Applied and gone; the answered and the undelivered numbers are free again.
        let left = try await pipeline.superuser.withConnection { connection in
            try await connection.query(
                "SELECT (SELECT count(*) FROM early_replies)::int, (SELECT count(*) FROM early_delivery_statuses)::int, (SELECT count(*) FROM open_surveys)::int"
            ).one().decode((Int, Int, Int).self)
        }
        #expect(left.0 == 0 && left.1 == 0)
        #expect(left.2 == 1, "only the unanswered, delivered number stays busy")
        await pipeline.close()
    }

    /// A text while the survey is queued but not yet sent cannot be an answer to it (the
    /// review's find: it would have credited this company with a late answer to another's
    /// survey): ignored, and nothing kept.
    @Test func aReplyBeforeTheSendStartedIsIgnored() async throws {
        let pipeline = try await Pipeline.make("earlyfail")
        let tenant = try await pipeline.company()
        let number = phone()
        try await pipeline.api { client in
            let ids = try await pipeline.send(to: [number], headers: tenant.headers, client: client)
            let early = try await pipeline.reply(from: number, "10", client: client)
            #expect(early.headers[HTTPField.Name("X-Reply-Outcome")!] == "ignored")
            pipeline.gateway.script(number, [.status(400, code: 21211)])
            try await pipeline.run([pipeline.worker()], alongside: [pipeline.janitor()]) {
                let kept = try await pipeline.superuser.withConnection { connection in
                    try await connection.query("SELECT count(*)::int FROM early_replies").one().decode(Int.self)
                }
                return try await pipeline.jobsLeft() == 0 && kept == 0
            }
            let request = try await pipeline.request(ids[0])
            #expect(request.status == "failed")
            #expect(request.score == nil)
        }
        await pipeline.close()
    }
}
