import Foundation
import Logging

/// Logs each message instead of sending it: local runs need no account. The number is
/// masked: logs are no place for personal data.
public struct ConsoleProvider: SMSProvider {
    let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
    }

    public func send(_ message: OutgoingSMS) async -> DeliveryAttempt {
        // Unique across restarts and workers: message ids key delivery callbacks.
        let id = "console-\(UUID().uuidString.lowercased())"
        logger.notice("SMS (console provider, not sent)", metadata: ["to": "\(mask(message.to))", "body": "\(message.body)", "message_id": "\(id)"])
        return .accepted(providerMessageID: id)
    }
}

/// Accepts every message at once: measures the queue's own ceiling in benchmarks.
public struct AcceptingProvider: SMSProvider {
    public init() {}

    public func send(_ message: OutgoingSMS) async -> DeliveryAttempt {
        .accepted(providerMessageID: "accepted-\(UUID().uuidString.lowercased())")
    }
}

/// `+32472306705` → `+32******705`.
public func mask(_ number: String) -> String {
    guard number.count > 6 else { return "***" }
    return String(number.prefix(3)) + String(repeating: "*", count: number.count - 6) + String(number.suffix(3))
}
