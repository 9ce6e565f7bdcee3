import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import SMSGateway
import SurveyDomain
import SurveyStorage

/// A survey call's webhooks (`/webhooks/twilio/voice...`), signed like the SMS ones:
///
/// - `voice`: the call was answered. A person hears the question inside a `<Gather>`; a
///   machine (answering-machine detection's `AnsweredBy`) is hung up on;
/// - `voice/answer?attempt=N`: the `<Gather>`'s action, with the `Digits` keyed (none when
///   the caller keyed nothing): a score is recorded and the caller thanked; anything else
///   is asked once more, then the call ends politely with a bad response counted;
/// - `voice/status`: the call's end; one nobody answered is placed again if the company's
///   rule allows.
extension WebhookController {
    @Sendable func callAnswered(request: Request, context: Context) async throws -> Response {
        var event = try await callEvent(request, context: context)
        // A redirect after a wait (below) carries what the first request said of who answered,
        // in its URL, which the provider signs.
        let query = request.uri.queryParameters
        if event.answeredBy == nil, let answeredBy = query["answeredBy"], answeredBy.count <= 32 {
            event.answeredBy = String(answeredBy)
        }
        let waits = query["waits"].flatMap { Int($0) } ?? 0
        let outcome = try await calls.answered(call: event.callSID, byMachine: event.answeredByMachine)
        Counter(label: "voice_calls_answered_total", dimensions: [("outcome", outcome.name)]).increment()
        switch outcome {
        case .ask(let question, let language):
            return Self.twiml(Self.script(language).ask(question, action: answerURL(attempt: 1)))
        case .notYetKnown where waits < Self.maximumWaits:
            // Answered within the moment the worker takes to write the call down: again in a second.
            var again = "\(configuration.publicBaseURL)/webhooks/twilio/voice?waits=\(waits + 1)"
            if let answeredBy = event.answeredBy, answeredBy.allSatisfy({ $0.isASCII && ($0.isLetter || $0 == "_") }) {
                again += "&answeredBy=\(answeredBy)"
            }
            return Self.twiml(VoiceScript.wait(andReturnTo: again))
        case .notYetKnown, .machine, .closed:
            return Self.twiml(VoiceScript.hangUp)
        }
    }

    /// Seconds a person waits for a call the worker has not written down (it never takes
    /// more than a moment; a worker that died meanwhile must not keep the line open).
    static var maximumWaits: Int { 10 }

    @Sendable func callKeyed(request: Request, context: Context) async throws -> Response {
        let event = try await callEvent(request, context: context)
        let attempt = request.uri.queryParameters["attempt"].flatMap { Int($0) } ?? 1
        guard (1...2).contains(attempt) else {
            throw Problem.invalidField("attempt", "must be 1 or 2")
        }
        let outcome = try await calls.keyed(VoiceScript.score(digits: event.digits), attempt: attempt, call: event.callSID)
        Counter(label: "voice_answers_total", dimensions: [("outcome", outcome.name)]).increment()
        switch outcome {
        case .recorded(let language):
            return Self.twiml(Self.script(language).thanks(score: VoiceScript.score(digits: event.digits)!))
        case .askAgain(let question, let language):
            return Self.twiml(Self.script(language).ask(question, action: answerURL(attempt: attempt + 1), again: true))
        case .badResponse(let language):
            return Self.twiml(Self.script(language).goodbye)
        case .closed:
            return Self.twiml(VoiceScript.hangUp)
        }
    }

    @Sendable func callEnded(request: Request, context: Context) async throws -> HTTPResponse.Status {
        let event = try await callEvent(request, context: context)
        // Only a call's final status ends it (`initiated`, `ringing`, `in-progress` say nothing here).
        guard ["completed", "busy", "no-answer", "failed", "canceled"].contains(event.status) else { return .noContent }
        // A call that fails at once (busy) can end before the worker has written it down;
        // the provider does not call again, so the moment is waited out here.
        var outcome = VoiceRepository.Ended.unknown
        for attempt in 0..<25 {
            if attempt > 0 { try await Task.sleep(for: .milliseconds(200)) }
            outcome = try await calls.ended(call: event.callSID, status: event.status, seconds: event.duration)
            if outcome != .unknown { break }
        }
        context.logger.info("call ended", metadata: ["status": "\(event.status)", "outcome": "\(outcome)"])
        return .noContent
    }

    // MARK: -

    private func callEvent(_ request: Request, context: Context) async throws -> TwilioWebhook.CallEvent {
        let pairs = try await verifiedForm(request, context: context)
        do {
            return try TwilioWebhook.callEvent(pairs, accountSID: configuration.accountSID)
        } catch {
            throw Self.refusal(error, context: context)
        }
    }

    private func answerURL(attempt: Int) -> String {
        configuration.publicBaseURL + "/webhooks/twilio/voice/answer?attempt=\(attempt)"
    }

    private static func script(_ language: String?) -> VoiceScript {
        VoiceScript(language: language.flatMap { try? LanguageTag(parsing: $0) })
    }

    private static func twiml(_ document: String) -> Response {
        Response(
            status: .ok, headers: [.contentType: "text/xml; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: document)))
    }
}

extension VoiceRepository.Answered {
    var name: String {
        switch self {
        case .ask: "person"
        case .machine: "machine"
        case .notYetKnown: "not-yet-known"
        case .closed: "closed"
        }
    }
}

extension VoiceRepository.Keyed {
    var name: String {
        switch self {
        case .recorded: "scored"
        case .askAgain: "asked-again"
        case .badResponse: "bad-response"
        case .closed: "closed"
        }
    }
}
