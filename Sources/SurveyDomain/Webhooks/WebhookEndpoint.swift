import Foundation

/// A company's webhook endpoint as the company sees it (never its secret).
public struct WebhookEndpoint: Sendable, Equatable {
    public var id: WebhookEndpointID
    public var url: String
    public var events: [WebhookEventType]
    public var description: String?
    public var enabled: Bool
    /// Why it is disabled: by the company, a 410 Gone, or five days of failures.
    public var disabledReason: String?
    public var disabledAt: Date?
    /// Since when every attempt has failed; nil after any success.
    public var failingSince: Date?
    /// Until when the secret rotated out also signs, if one was.
    public var previousSecretExpiresAt: Date?
    public var createdAt: Date

    public init(
        id: WebhookEndpointID, url: String, events: [WebhookEventType], description: String?, enabled: Bool,
        disabledReason: String?, disabledAt: Date?, failingSince: Date?, previousSecretExpiresAt: Date?, createdAt: Date
    ) {
        self.id = id
        self.url = url
        self.events = events
        self.description = description
        self.enabled = enabled
        self.disabledReason = disabledReason
        self.disabledAt = disabledAt
        self.failingSince = failingSince
        self.previousSecretExpiresAt = previousSecretExpiresAt
        self.createdAt = createdAt
    }

    /// Endpoints one company may have.
    public static let maximumPerCompany = 20
    public static let maximumDescriptionLength = 500
    /// What `PATCH … {"enabled": false}` records as the reason.
    public static let disabledByCompany = "disabled by the company"
}

/// A `PATCH`: the fields given, each replacing the stored one (`description` may be set
/// to nil).
public struct WebhookEndpointChange: Sendable {
    public var url: String?
    public var events: [WebhookEventType]?
    public var description: String??
    public var enabled: Bool?

    public init(url: String? = nil, events: [WebhookEventType]? = nil, description: String?? = nil, enabled: Bool? = nil) {
        self.url = url
        self.events = events
        self.description = description
        self.enabled = enabled
    }

    public var isEmpty: Bool { url == nil && events == nil && description == nil && enabled == nil }
}

/// One event to one endpoint, as its log shows it.
public struct WebhookDeliveryRecord: Sendable {
    public var id: WebhookDeliveryID
    /// `webhook-id`, `evt_…`.
    public var messageID: String
    public var eventType: WebhookEventType
    public var createdAt: Date
    public var state: WebhookDeliveryState
    public var nextAttemptAt: Date?
    public var attempts: [WebhookAttemptRecord]

    public init(
        id: WebhookDeliveryID, messageID: String, eventType: WebhookEventType, createdAt: Date, state: WebhookDeliveryState,
        nextAttemptAt: Date?, attempts: [WebhookAttemptRecord]
    ) {
        self.id = id
        self.messageID = messageID
        self.eventType = eventType
        self.createdAt = createdAt
        self.state = state
        self.nextAttemptAt = nextAttemptAt
        self.attempts = attempts
    }
}

public struct WebhookAttemptRecord: Sendable, Equatable {
    public var number: Int
    public var startedAt: Date
    public var durationMilliseconds: Int
    public var httpStatus: Int?
    public var error: String?
    public var responseExcerpt: String?

    public init(number: Int, startedAt: Date, durationMilliseconds: Int, httpStatus: Int?, error: String?, responseExcerpt: String?) {
        self.number = number
        self.startedAt = startedAt
        self.durationMilliseconds = durationMilliseconds
        self.httpStatus = httpStatus
        self.error = error
        self.responseExcerpt = responseExcerpt
    }
}
