/// One text message to send.
public struct OutgoingSMS: Sendable, Equatable {
    /// E.164.
    public var to: String
    public var body: String

    public init(to: String, body: String) {
        self.to = to
        self.body = body
    }
}

/// What became of one attempt to hand a message to the provider. The distinction that
/// matters is whether the message may have gone out: only when it surely did not is a
/// retry safe, because an SMS must never be sent twice.
public enum DeliveryAttempt: Sendable, Equatable {
    /// The provider took the message.
    case accepted(providerMessageID: String)
    /// Nothing was sent (refused connection, 429, 5xx): try again later.
    case retryable(reason: String, retryAfter: Duration?)
    /// The provider refused the message for good (invalid number, ...).
    case permanent(reason: String)
    /// The recipient unsubscribed at the provider.
    case optedOut
    /// The request may have reached the provider but its answer was lost (timeout after
    /// sending, connection dropped mid-response): retrying could send it twice.
    case uncertain(reason: String)
}

/// A way to send SMS. Implementations never throw: every outcome is a `DeliveryAttempt`.
public protocol SMSProvider: Sendable {
    func send(_ message: OutgoingSMS) async -> DeliveryAttempt
}
