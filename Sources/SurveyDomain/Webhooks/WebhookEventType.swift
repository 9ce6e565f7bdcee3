/// What a company's endpoint can be told. `ping` is sent by `/test` only; the others are
/// subscribed to per endpoint.
public enum WebhookEventType: String, Sendable, CaseIterable, Codable {
    case responseReceived = "response.received"
    case responseInvalid = "response.invalid"
    case requestDelivered = "request.delivered"
    case requestFailed = "request.failed"
    case requestExpired = "request.expired"
    case destinationOptedOut = "destination.opted_out"
    case ping

    /// The events an endpoint may subscribe to.
    public static let subscribable: [WebhookEventType] = allCases.filter { $0 != .ping }
}

/// Where one delivery (an event to an endpoint) stands.
public enum WebhookDeliveryState: String, Sendable, CaseIterable {
    /// Waiting for its next attempt (the first, or a retry).
    case pending
    /// An attempt was answered with a 2xx.
    case succeeded
    /// Given up: the retries ran out, the endpoint answered 410 Gone, or a `/test` ping failed.
    case failed
}

/// Webhook ids on the wire: `evt_<n>`, one per event, the same in every attempt and for
/// every endpoint, so a receiver can deduplicate.
public enum WebhookMessageID {
    public static func text(event: Int64) -> String { "evt_\(event)" }
}
