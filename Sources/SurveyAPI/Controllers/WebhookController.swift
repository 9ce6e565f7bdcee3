import Foundation
import HTTPTypes
import Hummingbird
import Metrics
import Logging
import SMSGateway
import SurveyDomain
import SurveyStorage

/// Twilio's webhooks: inbound replies and delivery statuses. Outside the bearer-token API;
/// authenticated by `X-Twilio-Signature` and by parameters that only Twilio's own requests
/// have (`TwilioWebhook`), and idempotent on `MessageSid` because providers retry.
struct WebhookController<Context: RequestContext> {
    struct Configuration: Sendable {
        /// The auth token the provider signs with.
        var authToken: String
        /// Our account at the provider: a request naming another is refused.
        var accountSID: String
        /// The public URL the provider calls us at (`https://api.example.com`), part of
        /// what is signed.
        var publicBaseURL: String
    }

    /// Twilio's webhooks are small forms; a larger body is not one of theirs.
    static var maximumBodySize: Int { 64 * 1024 }

    let configuration: Configuration
    let replies: ReplyRepository
    let calls: VoiceRepository
    let hasher: DestinationHasher

    func addRoutes(to routes: Routes<Context>) {
        routes.on(.post, "sms", use: inbound)
        routes.on(.post, "status", use: status)
        routes.on(.post, "voice", use: callAnswered)
        routes.on(.post, "voice/answer", use: callKeyed)
        routes.on(.post, "voice/status", use: callEnded)
    }

    @Sendable func inbound(request: Request, context: Context) async throws -> Response {
        let pairs = try await verifiedForm(request, context: context)
        let message: TwilioWebhook.Inbound
        do {
            message = try TwilioWebhook.inbound(pairs, accountSID: configuration.accountSID)
        } catch {
            throw Self.refusal(error, context: context)
        }
        let reply = ReplyParser.parse(message.body)
        var answer: String?
        let outcome: String
        // A sender that is not an E.164 number (an alphanumeric id) cannot be one we surveyed.
        if let number = PhoneNumber(e164: message.from) {
            let recorded = try await replies.recordReply(reply, from: hasher.hash(number), messageID: message.messageSID)
            outcome = recorded.name
            // Answered whatever the number's state (it changes nothing), once per message:
            // a retried webhook is a duplicate and gets no second answer.
            if case .help(let language) = reply, recorded == .help { answer = KeywordAnswers.help(language: language) }
        } else {
            outcome = "not-a-phone-number"
        }
        context.logger.info("inbound SMS", metadata: ["outcome": "\(outcome)"])
        Counter(label: "sms_replies_total", dimensions: [("outcome", outcome)]).increment()
        // The outcome is for the operator's tools (`surveyd sms reply`); only a caller holding
        // the auth token gets this far.
        return Response(
            status: .ok, headers: [.contentType: "text/xml; charset=utf-8", .replyOutcome: outcome],
            body: .init(byteBuffer: ByteBuffer(string: TwiML.response(message: answer))))
    }

    @Sendable func status(request: Request, context: Context) async throws -> HTTPResponse.Status {
        let pairs = try await verifiedForm(request, context: context)
        let callback: TwilioWebhook.StatusCallback
        do {
            callback = try TwilioWebhook.statusCallback(pairs, accountSID: configuration.accountSID)
        } catch {
            throw Self.refusal(error, context: context)
        }
        let status: ReplyRepository.DeliveryStatus =
            switch callback.status {
            case "delivered": .delivered
            case "failed", "undelivered": .failed
            default: .other
            }
        try await replies.recordDelivery(status, messageID: callback.messageSID)
        return .noContent
    }

    /// The form parameters, once the signature over them and our public URL checks out.
    /// Their meaning is checked after: a request Twilio did not sign learns nothing more.
    func verifiedForm(_ request: Request, context: Context) async throws -> [(String, String)] {
        let body = try await request.collectBody(upTo: Self.maximumBodySize)
        guard let pairs = FormURLEncoding.decode(String(buffer: body)) else {
            throw Problem(status: .badRequest, title: "Bad form", detail: "The body is not application/x-www-form-urlencoded.")
        }
        let url = configuration.publicBaseURL + request.uri.description
        guard let signature = request.headers[.twilioSignature],
            TwilioSignature.isValid(signature: signature, url: url, parameters: pairs, authToken: configuration.authToken)
        else {
            throw Problem(status: .forbidden, title: "Forbidden", detail: "Missing or invalid X-Twilio-Signature.")
        }
        return pairs
    }

    /// A signed webhook whose parameters are refused: a replay, or Twilio sending a
    /// parameter this build does not know. The second loses replies until the list is
    /// updated, so it is counted and logged (names only, never values) for an alert.
    static func refusal(_ violations: TwilioWebhook.Violations, context: Context) -> Problem {
        let fields = violations.all.map(\.field)
        context.logger.warning("signed webhook refused", metadata: ["fields": "\(fields.joined(separator: ","))"])
        Counter(label: "sms_webhooks_refused_total").increment()
        return .validation(violations.all.map { Problem.FieldError(field: $0.field, message: $0.message) })
    }
}

/// The TwiML answer to an inbound message: empty (no automatic reply) or one message.
enum TwiML {
    static func response(message: String?) -> String {
        let head = #"<?xml version="1.0" encoding="UTF-8"?>"#
        guard let message else { return head + "<Response></Response>" }
        return head + "<Response><Message>" + message.markupEscaped + "</Message></Response>"
    }
}

extension ReplyRepository.ReplyOutcome {
    /// The outcome as logs and metrics label it (never with the company or request).
    var name: String {
        switch self {
        case .scored: "scored"
        case .badResponse: "bad-response"
        case .optedOut: "opted-out"
        case .optedIn: "opted-in"
        case .help: "help"
        case .ignored: "ignored"
        case .duplicate: "duplicate"
        }
    }
}

extension HTTPField.Name {
    static let twilioSignature = Self("X-Twilio-Signature")!
    static let replyOutcome = Self("X-Reply-Outcome")!
}
