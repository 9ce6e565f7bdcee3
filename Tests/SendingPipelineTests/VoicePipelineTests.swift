import APITestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Postgres
import SMSGateway
import SurveyDomain
import SurveyStorage
import SurveyWorker
import TestSupport
import Testing

/// Surveys by phone call end to end, over HTTP: the worker places the call at the fake
/// gateway, which plays it against the live API as Twilio would (our signed TwiML fetched,
/// its `<Gather>` followed with scripted keys, the status callback at the end).
@Suite struct VoicePipelineTests {
    static func voiceWorker(_ pipeline: Pipeline) -> SendWorker {
        SendWorker(
            queue: QueueRepository(database: Database(client: pipeline.workerPool), policy: SendingPolicy()),
            client: pipeline.workerPool,
            sender: VoiceSender(provider: pipeline.provider(), publicBaseURL: Pipeline.publicBaseURL),
            configuration: Pipeline.fastWorker, logger: pipeline.logger)
    }

    static func survey(_ client: any TestClientProtocol, headers: HTTPFields) async throws -> Int {
        let created = try await client.execute(
            uri: "/survey/1.0.0/surveys", method: .post, headers: headers,
            body: ByteBuffer(
                string: #"{"name":"Calls","interactionType":"visit","questions":[{"body":"Would you recommend our garage?","language":"en"},{"body":"Recommanderiez-vous notre garage ?","language":"fr"}]}"#))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(created.body.readableBytesView)) as? [String: Any])
        return try #require(object["id"] as? Int)
    }

    static func call(
        _ number: String, language: String = "fr-BE", survey: Int, headers: HTTPFields, client: any TestClientProtocol
    ) async throws -> Int {
        let response = try await client.execute(
            uri: "/survey/1.0.0/surveys/\(survey)/send", method: .post, headers: headers,
            body: ByteBuffer(string: #"{"requests":[{"channel":"VOICE","destination":"\#(number)","language":"\#(language)"}]}"#))
        #expect(response.status == .accepted, "\(String(buffer: response.body))")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any])
        return try #require((object["results"] as? [[String: Any]])?.first?["requestId"] as? Int)
    }

    /// Runs the voice worker until every call placed so far has finished and `done` holds.
    static func run(_ pipeline: Pipeline, calls: Int, until done: @escaping @Sendable () async throws -> Bool = { true }) async throws {
        try await pipeline.run([voiceWorker(pipeline)]) {
            let played = pipeline.gateway.calls
            guard played.count >= calls, played.allSatisfy(\.finished) else { return false }
            return try await done()
        }
    }

    @Test func aCallAsksInTheRequestsLanguageAsksAgainAndRecordsTheScore() async throws {
        try await Pipeline.with("voice_cycle") { pipeline in
            let tenant = try await pipeline.company()
            let number = phone()
            pipeline.gateway.scriptCalls(number, [.init(keys: ["99", "7"])])
            try await pipeline.api(live: true) { client in
                pipeline.gateway.setAPIPort(try #require(client.port))
                let survey = try await Self.survey(client, headers: tenant.headers)
                let id = try await Self.call(number, survey: survey, headers: tenant.headers, client: client)
                try await Self.run(pipeline, calls: 1) { try await pipeline.jobsLeft() == 0 }

                let call = try #require(pipeline.gateway.calls.first)
                let twiml = call.conversation
                try #require(twiml.count == 3, "\(call.twiml)")
                // The question in a French voice, and the way to answer, inside the Gather.
                #expect(twiml[0].contains(#"<Say language="fr-FR">Recommanderiez-vous notre garage ?</Say>"#))
                #expect(twiml[0].contains(##"<Gather input="dtmf" numDigits="2" finishOnKey="#""##))
                #expect(twiml[0].contains("action=\"\(Pipeline.publicBaseURL)/webhooks/twilio/voice/answer?attempt=1\""))
                // 99 is no score: asked once more; then 7 is thanked.
                #expect(twiml[1].contains("Désolé") && twiml[1].contains("attempt=2"))
                #expect(twiml[2].contains("Votre note de 7 est enregistrée") && twiml[2].contains("<Hangup/>"))

                let request = try await pipeline.request(id)
                #expect(request.status == "delivered" && request.score == 7 && request.badReplies == 0)
                // The number is gone with the job; the call's minutes are kept for usage.
                #expect(!(try await pipeline.dump()).contains(number))
                let usage = try await client.execute(uri: "/survey/1.0.0/usage", method: .get, headers: tenant.headers)
                #expect(String(buffer: usage.body).contains(#""calls":1,"callMinutes":1"#), "\(String(buffer: usage.body))")
                #expect(String(buffer: usage.body).contains(#""callsQueuedToday":1"#))
                let report = try await client.execute(uri: "/survey/1.0.0/report?channel=VOICE", method: .get, headers: tenant.headers)
                #expect(String(buffer: report.body).contains(#""nps":{"promoters":0,"detractors":0,"score":0,"passives":1"#), "\(String(buffer: report.body))")
            }
        }
    }

    @Test func aMachineFailsTheRequestAndSilenceEndsPolitely() async throws {
        try await Pipeline.with("voice_machine") { pipeline in
            let tenant = try await pipeline.company()
            let (machine, silent) = (phone(), phone())
            pipeline.gateway.scriptCalls(machine, [.init(answeredBy: "machine_start", keys: [])])
            pipeline.gateway.scriptCalls(silent, [.init(keys: [nil, nil])])
            try await pipeline.api(live: true) { client in
                pipeline.gateway.setAPIPort(try #require(client.port))
                let survey = try await Self.survey(client, headers: tenant.headers)
                let machineID = try await Self.call(machine, language: "en-GB", survey: survey, headers: tenant.headers, client: client)
                let silentID = try await Self.call(silent, language: "de-AT", survey: survey, headers: tenant.headers, client: client)
                try await Self.run(pipeline, calls: 2) { try await pipeline.jobsLeft() == 0 }

                let answered = try await pipeline.request(machineID)
                #expect(answered.status == "failed" && answered.failure == "machine")
                let machineCall = try #require(pipeline.gateway.calls.first { $0.to == machine })
                #expect(machineCall.conversation == [#"<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>"#])

                let quiet = try await pipeline.request(silentID)
                #expect(quiet.status == "delivered" && quiet.score == nil && quiet.badReplies == 1)
                let silentCall = try #require(pipeline.gateway.calls.first { $0.to == silent })
                // The survey has no German question: its English one, in an English voice and words.
                #expect(silentCall.conversation.first?.contains(#"<Say language="en-US">Would you recommend our garage?</Say>"#) == true)
                #expect(silentCall.conversation.last?.contains("Thank you for your time. Goodbye.") == true)
                // Both numbers are free again.
                let open = try await pipeline.superuser.withConnection {
                    try await $0.query("SELECT count(*)::int FROM open_surveys").one().decode(Int.self)
                }
                #expect(open == 0)
            }
        }
    }

    @Test func unansweredCallsArePlacedAgainByTheCompanysRuleOneAtATime() async throws {
        try await Pipeline.with("voice_retry") { pipeline in
            let tenant = try await pipeline.company()
            let (patient, busy) = (phone(), phone())
            pipeline.gateway.scriptCalls(patient, [.init(keys: [], end: "no-answer"), .init(keys: ["10"])])
            pipeline.gateway.scriptCalls(busy, [.init(keys: [], end: "busy"), .init(keys: [], end: "busy")])
            try await pipeline.api(live: true) { client in
                pipeline.gateway.setAPIPort(try #require(client.port))
                let survey = try await Self.survey(client, headers: tenant.headers)
                let patientID = try await Self.call(patient, survey: survey, headers: tenant.headers, client: client)
                let busyID = try await Self.call(busy, survey: survey, headers: tenant.headers, client: client)
                try await Self.run(pipeline, calls: 2)

                // Nobody answered: queued again for the company's next try (60 minutes by default).
                for id in [patientID, busyID] {
                    #expect(try await pipeline.request(id).status == "queued")
                }
                let (due, dueAtMoved) = try await pipeline.superuser.withConnection {
                    try await $0.query("SELECT extract(epoch FROM min(run_at - now()))::float8, bool_and(due_at = run_at) FROM sms_jobs")
                        .one().decode((Double, Bool).self)
                }
                #expect((3500...3600).contains(due), "\(due)")
                // Its maximum age counts from the new call's time (an hour later it would be too old).
                #expect(dueAtMoved)
                // A call was placed: not cancelled now.
                let cancel = try await client.execute(uri: "/survey/1.0.0/requests/\(patientID)", method: .delete, headers: tenant.headers)
                #expect(cancel.status == .conflict)
                // A late word about the first call changes nothing.
                let first = try #require(pipeline.gateway.calls.first { $0.to == patient })
                let late = try await pipeline.webhook(
                    "/webhooks/twilio/voice/status",
                    [("CallSid", first.sid), ("AccountSid", FakeTwilio.accountSID), ("CallStatus", "completed"), ("CallDuration", "3")],
                    client: client)
                #expect(late.status == .noContent)
                #expect(try await pipeline.request(patientID).status == "queued")
                #expect(try await pipeline.jobsLeft() == 2)
                let requests = try await client.execute(uri: "/survey/1.0.0/requests/\(patientID)", method: .get, headers: tenant.headers)
                #expect(String(buffer: requests.body).contains(#""status":"queued""#))

                // The hour passes.
                try await pipeline.superuser.withConnection { try await $0.query("UPDATE sms_jobs SET run_at = now()") }
                try await Self.run(pipeline, calls: 4) { try await pipeline.jobsLeft() == 0 }
                let answered = try await pipeline.request(patientID)
                #expect(answered.status == "delivered" && answered.score == 10)
                let refused = try await pipeline.request(busyID)
                #expect(refused.status == "failed" && refused.failure == "busy")
                // Two calls each, never overlapping (each placed after the other ended).
                #expect(pipeline.gateway.calls.filter { $0.to == patient }.count == 2)
                #expect(pipeline.gateway.calls.filter { $0.to == busy }.count == 2)
            }
        }
    }

    @Test func voiceWebhooksAreSignedAndCheckedLikeTheSMSOnes() async throws {
        try await Pipeline.with("voice_webhooks") { pipeline in
            try await pipeline.api { client in
                let sid = "CA" + String(repeating: "ab", count: 16)
                let fields = [("CallSid", sid), ("AccountSid", FakeTwilio.accountSID), ("CallStatus", "in-progress")]
                let unsigned = try await pipeline.webhook("/webhooks/twilio/voice", fields, client: client, signature: "x")
                #expect(unsigned.status == .forbidden)
                let malformed = try await pipeline.webhook(
                    "/webhooks/twilio/voice", [("CallSid", "SM" + String(repeating: "ab", count: 16))] + fields.dropFirst(), client: client)
                #expect(malformed.status == .badRequest && String(buffer: malformed.body).contains(#""field":"CallSid""#))
                let replayed = try await pipeline.webhook(
                    "/webhooks/twilio/voice/answer?attempt=1", fields + [("DigitsX", "9")], client: client)
                #expect(replayed.status == .badRequest)
                // A call of nobody's: nothing is said, nothing recorded.
                let unknown = try await pipeline.webhook("/webhooks/twilio/voice/answer?attempt=1", fields + [("Digits", "9")], client: client)
                #expect(unknown.status == .ok && String(buffer: unknown.body).contains("<Hangup/>"))
                let status = try await pipeline.webhook(
                    "/webhooks/twilio/voice/status", [("CallSid", sid), ("AccountSid", FakeTwilio.accountSID), ("CallStatus", "completed")],
                    client: client)
                #expect(status.status == .noContent)
            }
        }
    }
}
