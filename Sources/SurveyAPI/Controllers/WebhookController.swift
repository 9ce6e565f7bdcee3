import Foundation
import HTTPTypes
import Hummingbird
import Metrics
import Logging
import SMSGateway
import SurveyDomain
import SurveyStorage

/// Twilio's webhooks: inbound replies and delivery statuses. Outside the bearer-token API;
/// authenticated by `X-Twilio-Signature` instead, and idempotent on `MessageSid` because
/// providers retry.
struct WebhookController<Context: RequestContext> {
    struct Configuration: Sendable {
        /// The auth token the provider signs with.
        var authToken: String
        /// The public URL the provider calls us at (`https://api.example.com`), part of
        /// what is signed.
        var publicBaseURL: String
    }

    let configuration: Configuration
    let replies: ReplyRepository
    let hasher: DestinationHasher

    func addRoutes(to routes: Routes<Context>) {
        routes.on(.post, "sms", use: inbound)
        routes.on(.post, "status", use: status)
    }

    @Sendable func inbound(request: Request, context: Context) async throws -> Response {
        let form = try await verifiedForm(request, context: context)
        let sid = Self.messageID(form)
        let from = form["From"] ?? ""
        guard !sid.isEmpty, !from.isEmpty else {
            var missing: [Problem.FieldError] = []
            if sid.isEmpty { missing.append(.init(field: "MessageSid", message: "is required")) }
            if from.isEmpty { missing.append(.init(field: "From", message: "is required")) }
            throw Problem.validation(missing)
        }
        // A sender that is not an E.164 number (an alphanumeric id) cannot be one we surveyed.
        if let number = PhoneNumber(e164: from) {
            let outcome = try await replies.recordReply(
                ReplyParser.parse(form["Body"] ?? ""), from: hasher.hash(number), messageID: sid)
            context.logger.info("inbound SMS", metadata: ["outcome": "\(Self.describe(outcome))"])
            Counter(label: "sms_replies_total", dimensions: [("outcome", Self.describe(outcome))]).increment()
        }
        // Empty TwiML: acknowledged, no automatic answer.
        return Response(
            status: .ok, headers: [.contentType: "text/xml; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: #"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#)))
    }

    @Sendable func status(request: Request, context: Context) async throws -> HTTPResponse.Status {
        let form = try await verifiedForm(request, context: context)
        let sid = Self.messageID(form)
        guard !sid.isEmpty else {
            throw Problem.validation([.init(field: "MessageSid", message: "is required")])
        }
        let status: ReplyRepository.DeliveryStatus =
            switch (form["MessageStatus"] ?? form["SmsStatus"] ?? "").lowercased() {
            case "delivered": .delivered
            case "failed", "undelivered": .failed
            default: .other
            }
        try await replies.recordDelivery(status, messageID: sid)
        return .noContent
    }

    /// The message's id: `MessageSid`, else the older `SmsSid` (the first that is not empty).
    static func messageID(_ form: [String: String]) -> String {
        [form["MessageSid"], form["SmsSid"]].lazy.compactMap { $0 }.first { !$0.isEmpty } ?? ""
    }

    /// The form parameters, once the signature over them and our public URL checks out.
    private func verifiedForm(_ request: Request, context: Context) async throws -> [String: String] {
        let body = try await request.body.collect(upTo: 64 * 1024)
        guard let pairs = FormURLEncoding.decode(String(buffer: body)) else {
            throw Problem(status: .badRequest, title: "Bad form", detail: "The body is not application/x-www-form-urlencoded.")
        }
        let url = configuration.publicBaseURL + request.uri.description
        guard let signature = request.headers[.twilioSignature],
            TwilioSignature.isValid(signature: signature, url: url, parameters: pairs, authToken: configuration.authToken)
        else {
            throw Problem(status: .forbidden, title: "Forbidden", detail: "Missing or invalid X-Twilio-Signature.")
        }
        return Dictionary(pairs, uniquingKeysWith: { first, _ in first })
    }

    static func describe(_ outcome: ReplyRepository.ReplyOutcome) -> String {
        switch outcome {
        case .scored: "scored"
        case .badResponse: "bad-response"
        case .optedOut: "opted-out"
        case .optedIn: "opted-in"
        case .ignored: "ignored"
        case .duplicate: "duplicate"
        }
    }
}

extension HTTPField.Name {
    static let twilioSignature = Self("X-Twilio-Signature")!
}
