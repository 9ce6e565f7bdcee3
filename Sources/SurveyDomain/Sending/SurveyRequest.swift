import Foundation

public enum RequestTag {}
public typealias RequestID = Identifier<RequestTag>

/// The channels a survey can be sent on. A channel is a unit of its own: its name on the
/// wire, how a destination is read, and (in the worker) how a message goes out.
public enum Channel: String, Sendable, CaseIterable {
    case sms = "SMS"
    case email = "EMAIL"
    case voice = "VOICE"

    /// What a destination on this channel looks like, for error messages.
    public var destinationHint: String {
        switch self {
        case .sms, .voice: "an E.164 phone number such as +32472306705"
        case .email: "an e-mail address such as jane@example.com"
        }
    }
}

/// Where one request goes: a phone (SMS) or a mailbox (e-mail). Stored only as its keyed
/// hash; the raw form lives in the queue until the message reaches its final state.
public enum Destination: Hashable, Sendable, CustomStringConvertible {
    case phone(PhoneNumber)
    case email(EmailAddress)

    /// Reads `text` as the channel expects it.
    public init(_ text: String, channel: Channel) throws(DestinationProblem) {
        switch channel {
        case .sms, .voice:
            guard let number = PhoneNumber(e164: text) else {
                throw DestinationProblem(message: "must be an E.164 phone number: + then 8 to 15 digits, no spaces (e.g. +32472306705)")
            }
            self = .phone(number)
        case .email:
            do {
                self = .email(try EmailAddress(parsing: text))
            } catch {
                throw DestinationProblem(message: error.description)
            }
        }
    }

    /// What the queue keeps for the sender: the E.164 number, or the address as sent.
    public var raw: String {
        switch self {
        case .phone(let number): number.e164
        case .email(let address): address.address
        }
    }

    public var description: String { "Destination(redacted)" }
}

public struct DestinationProblem: Error, Sendable, Equatable {
    public var message: String
}

/// One validated item of a send call.
public struct SurveyRequestDraft: Sendable, Equatable {
    public var channel: Channel
    public var destination: Destination
    public var segments: [String]
    public var referenceID: String?
    public var language: LanguageTag?
    /// When to send it; `nil` (or a time past) means now.
    public var sendAt: Date?

    public init(
        channel: Channel, destination: Destination, segments: [String], referenceID: String?, language: LanguageTag?,
        sendAt: Date? = nil
    ) {
        self.channel = channel
        self.destination = destination
        self.segments = segments
        self.referenceID = referenceID
        self.language = language
        self.sendAt = sendAt
    }
}

/// Why a valid item was not queued.
public enum SkipReason: String, Sendable, Equatable {
    /// This company surveyed the number within its `resurveyDays`.
    case recentlySurveyed = "recently-surveyed"
    /// The number replied STOP.
    case optedOut = "opted-out"
    /// The number has an open survey (from any company): a reply would be ambiguous.
    case destinationBusy = "destination-busy"
}

/// What became of one item, in input order.
public enum SendResult: Sendable, Equatable {
    case queued(RequestID)
    /// To go out at that time (a `sendAt`, or the end of the company's quiet hours); the
    /// send rules are checked again then.
    case scheduled(RequestID, for: Date)
    case skipped(SkipReason)
}

public enum SendLimits {
    public static let requestsPerCall = 1...1000
    public static let segmentsPerRequest = 0...20
    public static let segmentLength = 1...64
    public static let referenceIDLength = 1...128
    public static let idempotencyKeyLength = 1...255
}

/// Timing rules of the sending pipeline.
public struct SendingPolicy: Sendable {
    /// How long after sending a reply still counts.
    public var responseWindow: Duration
    /// How long a job may keep retrying before it fails.
    public var maximumJobAge: Duration

    public init(responseWindow: Duration = .seconds(72 * 3600), maximumJobAge: Duration = .seconds(3600)) {
        self.responseWindow = responseWindow
        self.maximumJobAge = maximumJobAge
    }
}
