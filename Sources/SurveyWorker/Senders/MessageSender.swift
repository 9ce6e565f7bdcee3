import SMSGateway
import SurveyDomain
import SurveyStorage

/// How one channel's messages go out: a job in, what became of it out. Implementations
/// never throw; every outcome is a `DeliveryAttempt`, whose distinction between "surely not
/// sent" and "maybe sent" the worker relies on to never send a message twice.
public protocol MessageSender: Sendable {
    var channel: Channel { get }
    func send(_ job: QueueRepository.Job) async -> SentMessage
}

/// An attempt, and what an accepted SMS is billed as (`nil` on other channels).
public struct SentMessage: Sendable, Equatable {
    public var attempt: DeliveryAttempt
    public var segments: Int?

    public init(_ attempt: DeliveryAttempt, segments: Int? = nil) {
        self.attempt = attempt
        self.segments = segments
    }
}

/// SMS through a provider (Twilio, or a local stand-in): the question is the message.
public struct SMSSender: MessageSender {
    let provider: any SMSProvider

    public init(provider: any SMSProvider) {
        self.provider = provider
    }

    public var channel: Channel { .sms }

    public func send(_ job: QueueRepository.Job) async -> SentMessage {
        SentMessage(
            await provider.send(OutgoingSMS(to: job.destination, body: job.body)), segments: SMSSegments(body: job.body).count)
    }
}

/// Calls through a provider's Calls API: the call fetches our TwiML when it is answered
/// (`/webhooks/twilio/voice`) and reports its end (`/webhooks/twilio/voice/status`). The
/// job stays until then (`QueueRepository.recordSentQuery`).
public struct VoiceSender: MessageSender {
    let provider: any CallProvider
    /// Where the provider reaches us (`PUBLIC_BASE_URL`), without a trailing slash.
    let publicBaseURL: String

    public init(provider: any CallProvider, publicBaseURL: String) {
        self.provider = provider
        self.publicBaseURL = publicBaseURL.hasSuffix("/") ? String(publicBaseURL.dropLast()) : publicBaseURL
    }

    public var channel: Channel { .voice }

    public func send(_ job: QueueRepository.Job) async -> SentMessage {
        SentMessage(
            await provider.call(
                OutgoingCall(
                    to: job.destination, twimlURL: publicBaseURL + "/webhooks/twilio/voice",
                    statusCallback: publicBaseURL + "/webhooks/twilio/voice/status")))
    }
}
