import Foundation
import Logging

/// One survey call to place: the number, and our URLs the provider fetches when it is
/// answered (TwiML) and posts its final status to.
public struct OutgoingCall: Sendable, Equatable {
    /// E.164.
    public var to: String
    public var twimlURL: String
    public var statusCallback: String

    public init(to: String, twimlURL: String, statusCallback: String) {
        self.to = to
        self.twimlURL = twimlURL
        self.statusCallback = statusCallback
    }
}

/// A way to place calls. As for SMS, every outcome is a `DeliveryAttempt`: a call the
/// provider may have placed is never placed again.
public protocol CallProvider: Sendable {
    func call(_ call: OutgoingCall) async -> DeliveryAttempt
}

extension TwilioProvider: CallProvider {
    /// Twilio's Calls API (`POST .../Calls.json`): our TwiML URL, a status callback at the
    /// call's end, answering-machine detection (a machine is told apart before our TwiML is
    /// fetched, `AnsweredBy`), and at most 30 s of ringing.
    public func call(_ call: OutgoingCall) async -> DeliveryAttempt {
        await post(
            "Calls.json",
            [
                ("To", call.to), ("From", configuration.from), ("Url", call.twimlURL), ("Method", "POST"),
                ("StatusCallback", call.statusCallback), ("StatusCallbackMethod", "POST"), ("MachineDetection", "Enable"),
                ("Timeout", "30"),
            ])
    }
}

extension ConsoleProvider: CallProvider {
    public func call(_ call: OutgoingCall) async -> DeliveryAttempt {
        // Twilio's shape, so that the (signed) TwiML endpoints can be tried by hand.
        let id = "CA" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        logger.notice("call (console provider, not placed)", metadata: ["to": "\(mask(call.to))", "call_sid": "\(id)"])
        return .accepted(providerMessageID: id)
    }
}

extension AcceptingProvider: CallProvider {
    public func call(_ call: OutgoingCall) async -> DeliveryAttempt {
        .accepted(providerMessageID: "CA" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: ""))
    }
}
