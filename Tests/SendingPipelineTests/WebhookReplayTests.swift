import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Postgres
import SMSGateway
import SurveyAPI
import Testing

/// Issue 12: a captured, genuinely signed webhook re-sent after moving characters across
/// a name/value boundary keeps its signature. It must change nothing.
@Suite struct WebhookReplayTests {
    /// A reply as Twilio posts it, with its signature.
    static func genuineReply(from number: String, body: String) -> (form: [(String, String)], signature: String) {
        let sid = Pipeline.messageSID()
        let form = [
            ("MessageSid", sid), ("SmsSid", sid), ("SmsMessageSid", sid), ("AccountSid", FakeTwilio.accountSID),
            ("From", number), ("To", Pipeline.sender), ("Body", body), ("SmsStatus", "received"), ("NumSegments", "1"),
        ]
        let signature = TwilioSignature.sign(
            url: Pipeline.publicBaseURL + "/webhooks/twilio/sms", parameters: form, authToken: FakeTwilio.authToken)
        return (form, signature)
    }

    /// The two rewrites the sweep used, each keeping the signature valid.
    static func replays(of form: [(String, String)]) -> [[(String, String)]] {
        let sid = form.first { $0.0 == "MessageSid" }!.1
        let from = form.first { $0.0 == "From" }!.1
        // MessageSid=SMx → MessageSidS=Mx.
        let first = form.map { $0.0 == "MessageSid" ? ("MessageSidS", String(sid.dropFirst())) : $0 }
        // SmsSid=SMx + SmsStatus=received → SmsSid=SMxSmsStatusreceived, with MessageSid folded
        // into From and SmsMessageSid into NumSegments (the values sorted before each), so only
        // SmsSid is left to fall back on.
        let second = form.compactMap { pair -> (String, String)? in
            switch pair.0 {
            case "SmsSid": ("SmsSid", sid + "SmsStatusreceived")
            case "SmsStatus", "MessageSid", "SmsMessageSid": nil
            case "From": ("From", from + "MessageSid" + sid)
            case "NumSegments": ("NumSegments", pair.1 + "SmsMessageSid" + sid)
            default: pair
            }
        }
        return [first, second]
    }

    @Test func rewrittenRepliesKeepTheirSignatureAndAreRefused() async throws {
        let pipeline = try await Pipeline.make("replay")
        let first = try await pipeline.company()
        let second = try await pipeline.company()
        let number = phone()
        try await pipeline.api { client in
            // Company A surveys the number; the customer answers 9.
            let a = try await pipeline.send(to: [number], headers: first.headers, client: client)
            try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }
            let reply = Self.genuineReply(from: number, body: "9")
            let accepted = try await pipeline.webhook("/webhooks/twilio/sms", reply.form, client: client, signature: reply.signature)
            #expect(accepted.status == .ok)
            #expect(try await pipeline.request(a[0]).score == 9)

            // Company B surveys the same number later.
            let b = try await pipeline.send(to: [number], headers: second.headers, client: client)
            try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }
            for replay in Self.replays(of: reply.form) {
                #expect(TwilioSignature.isValid(
                    signature: reply.signature, url: Pipeline.publicBaseURL + "/webhooks/twilio/sms", parameters: replay,
                    authToken: FakeTwilio.authToken))
                let response = try await pipeline.webhook("/webhooks/twilio/sms", replay, client: client, signature: reply.signature)
                #expect(response.status == .badRequest, "\(replay)")
            }
            #expect(try await pipeline.request(b[0]).score == nil)
            #expect(try await pipeline.request(b[0]).badReplies == 0)

            // A replayed START must not undo a later STOP.
            let start = Self.genuineReply(from: number, body: "START")
            #expect(try await pipeline.webhook("/webhooks/twilio/sms", start.form, client: client, signature: start.signature).status == .ok)
            let stop = Self.genuineReply(from: number, body: "STOP")
            #expect(try await pipeline.webhook("/webhooks/twilio/sms", stop.form, client: client, signature: stop.signature).status == .ok)
            for replay in Self.replays(of: start.form) {
                let response = try await pipeline.webhook("/webhooks/twilio/sms", replay, client: client, signature: start.signature)
                #expect(response.status == .badRequest)
            }
            let optedOut = try await pipeline.superuser.withConnection { connection in
                try await connection.query("SELECT count(*)::int FROM opt_outs").one().decode(Int.self)
            }
            #expect(optedOut == 1)
        }
        await pipeline.close()
    }

    /// A signed webhook whose id holds NUL or is 10,000 characters long was a 500 (an index
    /// row too large); a form of another account is refused too.
    @Test func malformedIdsAndOtherAccountsAreClientErrors() async throws {
        let pipeline = try await Pipeline.make("replayids")
        try await pipeline.api { client in
            for sid in ["SM\u{0}0123456789abcdef0123456789abcde", "SM" + String(repeating: "a", count: 10_000)] {
                for path in ["/webhooks/twilio/sms", "/webhooks/twilio/status"] {
                    let response = try await pipeline.webhook(
                        path, [("MessageSid", sid), ("From", phone()), ("Body", "9"), ("MessageStatus", "delivered")].filter {
                            path.hasSuffix("sms") ? $0.0 != "MessageStatus" : $0.0 != "Body" && $0.0 != "From"
                        }, client: client)
                    #expect(response.status == .badRequest)
                }
            }
            let other = try await pipeline.webhook(
                "/webhooks/twilio/sms", [("MessageSid", Pipeline.messageSID()), ("From", phone()), ("Body", "STOP")], client: client,
                account: "AC" + String(repeating: "e", count: 32))
            #expect(other.status == .badRequest)
            #expect(String(buffer: other.body).contains(#""field":"AccountSid""#))
        }
        #expect(!(try await pipeline.dump()).contains("opt_outs"))
        await pipeline.close()
    }

    @Test func helpIsAnsweredAndChangesNothing() async throws {
        let pipeline = try await Pipeline.make("help")
        try await pipeline.api { client in
            let number = phone()
            let sid = Pipeline.messageSID()
            let response = try await pipeline.reply(from: number, "Aide", client: client, sid: sid)
            #expect(response.status == .ok)
            #expect(response.headers[HTTPField.Name("X-Reply-Outcome")!] == "help")
            #expect(String(buffer: response.body).contains("<Message>Enquêtes de satisfaction"))
            // Twilio retrying the same message gets no second answer.
            let retried = try await pipeline.reply(from: number, "Aide", client: client, sid: sid)
            #expect(retried.headers[HTTPField.Name("X-Reply-Outcome")!] == "duplicate")
            #expect(!String(buffer: retried.body).contains("<Message>"))
            let stop = try await pipeline.reply(from: phone(), "Stop please.", client: client)
            #expect(stop.headers[HTTPField.Name("X-Reply-Outcome")!] == "opted-out")
        }
        await pipeline.close()
    }
}
