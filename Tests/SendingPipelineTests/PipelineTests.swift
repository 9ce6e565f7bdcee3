import Foundation
import Logging
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Postgres
import SMSGateway
import SurveyDomain
import SurveyStorage
import SurveyWorker
import TestSupport
import Telemetry
import Testing

@Suite struct PipelineTests {
    @Test func fullCycleSendReplyDeliveryAndUsage() async throws {
        let pipeline = try await Pipeline.make("cycle")
        let tenant = try await pipeline.company()
        let numbers = [phone(), phone(), phone()]
        try await pipeline.api { client in
            let ids = try await pipeline.send(to: numbers, headers: tenant.headers, client: client)
            #expect(ids.count == 3)
            try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }

            // The gateway got each message once, as Twilio expects it.
            let received = pipeline.gateway.accepted
            #expect(received.map(\.to).sorted() == numbers.sorted())
            #expect(received.allSatisfy { $0.from == Pipeline.sender && $0.body == "How likely are you to recommend us, 0-10?" })
            #expect(received.allSatisfy { $0.statusCallback == Pipeline.publicBaseURL + "/webhooks/twilio/status" })
            for id in ids {
                let request = try await pipeline.request(id)
                #expect(request.status == "sent")
                #expect(request.segments == 1)
                #expect(received.contains { $0.sid == request.messageID })
            }

            // A good reply scores; a bad one counts until a good one arrives.
            #expect(try await pipeline.reply(from: numbers[0], "9", client: client).status == .ok)
            #expect(try await pipeline.request(ids[0]).score == 9)
            _ = try await pipeline.reply(from: numbers[1], "great", client: client)
            #expect(try await pipeline.request(ids[1]).badReplies == 1)
            #expect(try await pipeline.request(ids[1]).score == nil)
            _ = try await pipeline.reply(from: numbers[1], "8/10", client: client)
            #expect(try await pipeline.request(ids[1]).score == 8)
            // Later replies to an answered request change nothing.
            _ = try await pipeline.reply(from: numbers[0], "2", client: client)
            #expect(try await pipeline.request(ids[0]).score == 9)
            // A replayed webhook (same MessageSid) is processed once.
            let sid = Pipeline.messageSID()
            _ = try await pipeline.reply(from: numbers[2], "nope", client: client, sid: sid)
            _ = try await pipeline.reply(from: numbers[2], "nope", client: client, sid: sid)
            #expect(try await pipeline.request(ids[2]).badReplies == 1)
            // A number we never surveyed: acknowledged, ignored.
            #expect(try await pipeline.reply(from: phone(), "10", client: client).status == .ok)

            // Delivery statuses.
            let first = try await pipeline.request(ids[0])
            let status = try await pipeline.webhook(
                "/webhooks/twilio/status", [("MessageSid", first.messageID!), ("MessageStatus", "delivered")], client: client)
            #expect(status.status == .noContent)
            #expect(try await pipeline.request(ids[0]).status == "delivered")
            let third = try await pipeline.request(ids[2])
            _ = try await pipeline.webhook(
                "/webhooks/twilio/status", [("MessageSid", third.messageID!), ("MessageStatus", "undelivered"), ("ErrorCode", "30003")],
                client: client)
            let failed = try await pipeline.request(ids[2])
            #expect(failed.status == "failed")
            #expect(failed.failure == "undelivered")

            // Usage: three messages, one segment each.
            let usage = try await client.execute(uri: "/survey/1.0.0/usage", method: .get, headers: tenant.headers)
            let month = String(Timestamp.format(Date()).prefix(7))
            #expect(
                String(buffer: usage.body)
                    == #"{"month":"\#(month)","messages":3,"segments":3,"emails":0,"calls":0,"callMinutes":0,"dailySmsCap":10000,"smsQueuedToday":3,"dailyEmailCap":50000,"emailsQueuedToday":0,"dailyVoiceCap":1000,"callsQueuedToday":0}"#)
            let bad = try await client.execute(uri: "/survey/1.0.0/usage?month=2026-13", method: .get, headers: tenant.headers)
            #expect(bad.status == .badRequest)

            // The report of all that (the last 30 days by default): 3 requests, one failed
            // (undelivered), 9 and 8 good, "nope" bad. NPS = 100 × (1 − 0) / 2 = 50.
            let expected =
                #""nps":{"promoters":1,"detractors":0,"score":50,"passives":1,"marginOfError":69.3},"#
                + #""responseStatistics":{"totalRequests":3,"totalResponses":3,"goodResponses":2,"badResponses":1,"failed":1,"responseRate":100}"#
            let report = try await client.execute(uri: "/survey/1.0.0/report", method: .get, headers: tenant.headers)
            #expect(String(buffer: report.body).contains(expected), "\(String(buffer: report.body))")
            // The worker's compactor folds the rollups (as its role may); the numbers stay.
            #expect(try await ReportRepository(database: Database(client: pipeline.workerPool)).compact() > 0)
            let compacted = try await client.execute(uri: "/survey/1.0.0/report", method: .get, headers: tenant.headers)
            #expect(String(buffer: compacted.body).contains(expected))
        }
        await pipeline.close()
    }

    @Test func repliesAfterTheResponseWindowAreIgnored() async throws {
        let pipeline = try await Pipeline.make("window")
        let tenant = try await pipeline.company()
        let number = phone()
        try await pipeline.api { client in
            let ids = try await pipeline.send(to: [number], headers: tenant.headers, client: client)
            try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }
            try await pipeline.superuser.withConnection { connection in
                try await connection.query("UPDATE survey_requests SET respond_by = now() - interval '1 second'")
            }
            _ = try await pipeline.reply(from: number, "10", client: client)
            _ = try await pipeline.reply(from: number, "meh", client: client)
            let request = try await pipeline.request(ids[0])
            #expect(request.score == nil)
            #expect(request.badReplies == 0)
        }
        await pipeline.close()
    }

    @Test func webhooksWithABadSignatureAreRefusedAndRecordNothing() async throws {
        let pipeline = try await Pipeline.make("signature")
        try await pipeline.api { client in
            let parameters = [("MessageSid", "SM1"), ("From", phone()), ("Body", "STOP")]
            for signature in ["", "bm90IGEgc2lnbmF0dXJl", TwilioSignature.sign(url: "http://elsewhere/webhooks/twilio/sms", parameters: parameters, authToken: FakeTwilio.authToken)] {
                let response = try await pipeline.webhook("/webhooks/twilio/sms", parameters, client: client, signature: signature)
                #expect(response.status == .forbidden)
            }
            // Signed with another token.
            let forged = TwilioSignature.sign(url: Pipeline.publicBaseURL + "/webhooks/twilio/sms", parameters: parameters, authToken: "guess")
            #expect(try await pipeline.webhook("/webhooks/twilio/sms", parameters, client: client, signature: forged).status == .forbidden)
            let status = try await pipeline.webhook(
                "/webhooks/twilio/status", [("MessageSid", "SM1"), ("MessageStatus", "failed")], client: client, signature: "x")
            #expect(status.status == .forbidden)
            // Correctly signed but incomplete: a 400 naming each missing field, nothing recorded.
            let incomplete = try await pipeline.webhook("/webhooks/twilio/sms", [("Body", "9")], client: client)
            #expect(incomplete.status == .badRequest)
            #expect(String(buffer: incomplete.body).contains(#""field":"MessageSid""#))
            #expect(String(buffer: incomplete.body).contains(#""field":"From""#))
        }
        let dump = try await pipeline.dump()
        #expect(!dump.contains("inbound_messages"))
        #expect(!dump.contains("opt_outs"))
        await pipeline.close()
    }

    @Test func retriesTransientErrorsAndFailsPermanentOnesAtOnce() async throws {
        let pipeline = try await Pipeline.make("retries")
        let tenant = try await pipeline.company()
        let flaky = phone(), throttled = phone(), invalid = phone(), unsubscribed = phone(), hopeless = phone()
        pipeline.gateway.script(flaky, [.status(500, code: nil), .status(503, code: nil)])
        pipeline.gateway.script(throttled, [.status(429, code: 20429)])
        pipeline.gateway.script(invalid, [.status(400, code: 21211)])
        pipeline.gateway.script(unsubscribed, [.status(400, code: 21610)])
        pipeline.gateway.script(hopeless, Array(repeating: .status(500, code: nil), count: 10))
        try await pipeline.api { client in
            let ids = try await pipeline.send(to: [flaky, throttled, invalid, unsubscribed, hopeless], headers: tenant.headers, client: client)
            try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }
            #expect(try await pipeline.request(ids[0]).status == "sent")
            #expect(try await pipeline.request(ids[1]).status == "sent")
            #expect(try await pipeline.request(ids[2]).failure == "permanent")
            #expect(try await pipeline.request(ids[3]).failure == "opted-out")
            #expect(try await pipeline.request(ids[4]).failure == "retries-exhausted")
            let attempts = Dictionary(grouping: pipeline.gateway.received, by: \.to).mapValues(\.count)
            #expect(attempts[flaky] == 3)
            #expect(attempts[throttled] == 2)
            #expect(attempts[invalid] == 1)
            #expect(attempts[hopeless] == Pipeline.fastWorker.retry.maximumAttempts)
            // Each sent once and only once.
            #expect(pipeline.gateway.accepted.filter { $0.to == flaky }.count == 1)
            // A request that surely never reached the phone neither keeps its number busy
            // nor counts as "recently surveyed".
            #expect(try await pipeline.send(to: [invalid], headers: tenant.headers, client: client).count == 1)
            // One that reached it does.
            #expect(try await pipeline.send(to: [flaky], headers: tenant.headers, client: client).isEmpty)
        }
        await pipeline.close()
    }

    @Test func anAnswerThatNeverComesIsUncertainAndNotResent() async throws {
        let pipeline = try await Pipeline.make("uncertain")
        let tenant = try await pipeline.company()
        let slow = phone()
        pipeline.gateway.script(slow, [.delay(.seconds(3))])
        try await pipeline.api { client in
            let ids = try await pipeline.send(to: [slow], headers: tenant.headers, client: client)
            let worker = pipeline.worker(provider: pipeline.provider(timeout: .milliseconds(500)))
            try await pipeline.run([worker]) { try await pipeline.jobsLeft() == 0 }
            let request = try await pipeline.request(ids[0])
            #expect(request.status == "failed")
            #expect(request.failure == "uncertain")
            try await Task.sleep(for: .seconds(1))
            #expect(pipeline.gateway.received.filter { $0.to == slow }.count == 1)
        }
        await pipeline.close()
    }

    @Test func aJobWhoseLeaseRanOutFailsAsUncertainWithoutBeingSent() async throws {
        let pipeline = try await Pipeline.make("lease")
        let tenant = try await pipeline.company()
        let number = phone()
        let untried = phone()
        try await pipeline.api { client in
            let ids = try await pipeline.send(to: [number, untried], headers: tenant.headers, client: client)
            // As if a worker claimed both, started sending the first, and died before
            // recording anything.
            let queue = QueueRepository(database: Database(client: pipeline.workerPool), policy: SendingPolicy())
            #expect(try await queue.claim(limit: 10, lease: .seconds(60)).count == 2)
            try await pipeline.superuser.withConnection { connection in
                // The first request first in claim order, and started through it.
                try await connection.query(
                    "UPDATE sms_jobs SET claim_position = CASE WHEN request_id = \(ids[0]) THEN 1 ELSE 2 END")
                try await connection.query("UPDATE sms_claims SET started_through = 1")
                try await connection.query("UPDATE sms_jobs SET leased_until = now() - interval '1 second'")
            }
            try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }
            let request = try await pipeline.request(ids[0])
            #expect(request.failure == "uncertain")
            #expect(!pipeline.gateway.received.contains { $0.to == number })
            // The one it never started went back to the queue and was sent, once.
            #expect(try await pipeline.request(ids[1]).status == "sent")
            #expect(pipeline.gateway.received.filter { $0.to == untried }.count == 1)

            // A job never claimed within the maximum age (workers down) is not sent days late.
            let late = try await pipeline.send(to: [phone()], headers: tenant.headers, client: client)
            try await pipeline.superuser.withConnection { connection in
                // Due (and queued) two hours ago: its age counts from when it fell due.
                try await connection.query("UPDATE sms_jobs SET created_at = now() - interval '2 hours', due_at = now() - interval '2 hours'")
            }
            try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }
            #expect(try await pipeline.request(late[0]).failure == "expired")
            #expect(pipeline.gateway.received.count == 1)
        }
        await pipeline.close()
    }

    @Test func stopAndStartOptOutAcrossCompanies() async throws {
        let pipeline = try await Pipeline.make("optout")
        let tenant = try await pipeline.company()
        let other = try await pipeline.company()
        let number = phone()
        try await pipeline.api { client in
            let ids = try await pipeline.send(to: [number], headers: tenant.headers, client: client)
            try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }
            _ = try await pipeline.reply(from: number, " Stop ", client: client)
            // Not a bad response, and the survey is closed: a later score is ignored.
            #expect(try await pipeline.request(ids[0]).badReplies == 0)
            _ = try await pipeline.reply(from: number, "10", client: client)
            #expect(try await pipeline.request(ids[0]).score == nil)
            // Every company now skips the number.
            let skipped = try await pipeline.send(to: [number], headers: other.headers, client: client)
            #expect(skipped.isEmpty)
            _ = try await pipeline.reply(from: number, "START", client: client)
            #expect(try await pipeline.send(to: [number], headers: other.headers, client: client).count == 1)
        }
        await pipeline.close()
    }

    @Test func twoWorkersNeverSendAJobTwice() async throws {
        let pipeline = try await Pipeline.make("workers")
        let tenant = try await pipeline.company()
        let numbers = (0..<300).map { _ in phone() }
        pipeline.gateway.setLatency(.milliseconds(2))
        try await pipeline.api { client in
            var configuration = Pipeline.fastWorker
            configuration.batchSize = 20
            _ = try await pipeline.send(to: Array(Set(numbers)), headers: tenant.headers, client: client)
            try await pipeline.run([pipeline.worker(configuration), pipeline.worker(configuration)]) {
                try await pipeline.jobsLeft() == 0
            }
        }
        let received = pipeline.gateway.received.map(\.to)
        #expect(received.count == Set(numbers).count)
        #expect(Set(received).count == received.count)
        await pipeline.close()
    }

    /// Neither the database nor any log line, at any level, holds a phone number, a token
    /// or the text of a reply after a whole cycle.
    @Test func noPhoneNumberTokenOrReplyTextAtRestOrInLogsAfterAFullCycle() async throws {
        let sink = LogSink.memory()
        var logger = Logger(label: "surveyd.test") { LineLogHandler(label: $0, format: .json, sink: sink) }
        logger.logLevel = .trace
        let pipeline = try await Pipeline.make("privacy", logger: logger)
        let tenant = try await pipeline.company()
        let token = String(tenant.headers[.authorization]!.dropFirst("Bearer ".count))
        let numbers = [phone(), phone()]
        try await pipeline.api { client in
            // With an Idempotency-Key: the stored fingerprint of the body must not give the numbers away.
            let ids = try await pipeline.send(to: numbers, headers: tenant.headers, client: client, idempotencyKey: "privacy-1")
            // While queued, the number is in the job (and only there).
            #expect(try await pipeline.dump().contains(numbers[0]))
            try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }
            let messageID = try #require(try await pipeline.request(ids[0]).messageID)
            _ = try await pipeline.webhook(
                "/webhooks/twilio/status", [("MessageSid", messageID), ("MessageStatus", "delivered"), ("To", numbers[0])],
                client: client)
            _ = try await pipeline.reply(from: numbers[0], "9 ", client: client)
            _ = try await pipeline.reply(from: numbers[1], "Terrible-service-xyzzy", client: client)
            _ = try await pipeline.reply(from: numbers[1], "STOP", client: client)
            // A failed authentication with a token-shaped secret, and a wrong one.
            let wrong = "nps_live_" + String(repeating: "Q", count: 43)
            _ = try await client.execute(uri: "/survey/1.0.0/surveys", method: .get, headers: [.authorization: "Bearer \(wrong)"])
            #expect(try await pipeline.request(ids[0]).score == 9)
        }
        let dump = try await pipeline.dump()
        let logs = sink.lines.joined()
        #expect(!dump.isEmpty)
        #expect(sink.lines.count > 10, "the test logged too little to prove anything: \(sink.lines.count) lines")
        #expect(logs.contains("request_id"), "request lines carry their id")
        for number in numbers {
            let digits = String(number.dropFirst())
            let forms = [
                number, digits, "0" + digits.dropFirst(2), String(digits.suffix(8)),
                Data(number.utf8).base64EncodedString(), Data(number.utf8).map { String(format: "%02x", $0) }.joined(),
            ]
            for form in forms {
                #expect(!dump.contains(form), "found \(form) at rest")
                #expect(!logs.contains(form), "found \(form) in the logs")
            }
        }
        #expect(!dump.lowercased().contains("xyzzy"))
        #expect(!logs.lowercased().contains("xyzzy"), "reply text in the logs")
        for secret in [token, String(token.dropFirst(APIToken.prefix.count)), "QQQQQQQQQQQQ"] {
            #expect(!logs.contains(secret), "a token in the logs")
        }
        for line in sink.lines {
            #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) is [String: Any], "not a JSON object: \(line)")
        }
        await pipeline.close()
    }

    @Test func gracefulShutdownReleasesWhatItHasNotSent() async throws {
        let pipeline = try await Pipeline.make("shutdown")
        let tenant = try await pipeline.company()
        pipeline.gateway.setLatency(.milliseconds(50))
        try await pipeline.api { client in
            let ids = try await pipeline.send(to: (0..<40).map { _ in phone() }, headers: tenant.headers, client: client)
            var configuration = Pipeline.fastWorker
            configuration.concurrency = 2
            configuration.batchSize = 40
            // Stop as soon as a few went out.
            try await pipeline.run([pipeline.worker(configuration)]) { pipeline.gateway.received.count >= 4 }
            var sent = 0
            var queued = 0
            for id in ids {
                switch try await pipeline.request(id).status {
                case "sent": sent += 1
                case "queued": queued += 1
                default: Issue.record("request \(id) neither sent nor queued")
                }
            }
            #expect(sent == pipeline.gateway.received.count)
            #expect(queued > 0)
            #expect(sent + queued == ids.count)
            // What it did not send is back in the queue, unleased, for the next worker.
            let leased = try await pipeline.superuser.withConnection {
                try await $0.query("SELECT count(*)::int FROM sms_jobs WHERE leased_until IS NOT NULL").one().decode(Int.self)
            }
            #expect(leased == 0)
            #expect(try await pipeline.jobsLeft() == queued)
        }
        await pipeline.close()
    }
}
