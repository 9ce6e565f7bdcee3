/// The parameters of Twilio's two webhooks, checked beyond their signature.
///
/// Twilio signs the URL followed by each parameter's name and value, sorted, with nothing
/// between them. So characters can be moved across a name/value boundary without changing
/// the signature: a captured `MessageSid=SMx` replays as `MessageSidS=Mx`, and
/// `SmsSid=SMx&SmsStatus=received` as `SmsSid=SMxSmsStatusreceived`. Every rewrite of that
/// kind produces a name Twilio never sends or an id out of Twilio's format, so both are
/// refused: only the names Twilio documents for each webhook, ids of exactly Twilio's
/// shape that agree with each other, and our own account.
public enum TwilioWebhook {
    public struct Inbound: Sendable, Equatable {
        public var messageSID: String
        public var from: String
        public var body: String

        public init(messageSID: String, from: String, body: String) {
            self.messageSID = messageSID
            self.from = from
            self.body = body
        }
    }

    public struct StatusCallback: Sendable, Equatable {
        public var messageSID: String
        /// Lowercased, as Twilio spells it (`queued`, `sent`, `delivered`, `undelivered`, `failed`, ...).
        public var status: String
        public var errorCode: String?

        public init(messageSID: String, status: String, errorCode: String? = nil) {
            self.messageSID = messageSID
            self.status = status
            self.errorCode = errorCode
        }
    }

    /// A parameter that is missing, unknown, repeated or malformed, named for the caller.
    public struct Violation: Error, Sendable, Equatable {
        public var field: String
        public var message: String
    }

    /// An inbound message (`/sms`): its id, sender and text.
    public static func inbound(_ pairs: [(String, String)], accountSID: String) throws(Violations) -> Inbound {
        var violations = Violations()
        let form = checked(
            pairs, allowed: inboundNames, allowedPrefixes: inboundIndexedPrefixes, accountSID: accountSID, violations: &violations)
        let sid = messageSID(form, violations: &violations)
        let from = form["From"] ?? ""
        if from.isEmpty { violations.append("From", "is required") }
        // Twilio always sends both; without them a neighbour could swallow the text across
        // the unseparated signature (`ApiVersion=2010-04-01Body9` with Body dropped).
        if form["Body"] == nil { violations.append("Body", "is required") }
        try violations.throwIfAny()
        return Inbound(messageSID: sid, from: from, body: form["Body"] ?? "")
    }

    /// A delivery status callback (`/status`).
    public static func statusCallback(_ pairs: [(String, String)], accountSID: String) throws(Violations) -> StatusCallback {
        var violations = Violations()
        let form = checked(pairs, allowed: statusNames, allowedPrefixes: [], accountSID: accountSID, violations: &violations)
        let sid = messageSID(form, violations: &violations)
        let statuses = [form["MessageStatus"], form["SmsStatus"]].compactMap { $0?.lowercased() }
        if statuses.isEmpty {
            violations.append("MessageStatus", "is required")
        } else if Set(statuses).count > 1 {
            violations.append("SmsStatus", "must agree with MessageStatus")
        } else if statuses[0].isEmpty || statuses[0].count > 32 || !statuses[0].allSatisfy({ $0.isASCII && ($0.isLetter || $0 == "_") }) {
            violations.append("MessageStatus", "is not a message status")
        }
        try violations.throwIfAny()
        return StatusCallback(messageSID: sid, status: statuses[0], errorCode: form["ErrorCode"])
    }

    /// Whether `text` has the shape of a message SID: `SM` or `MM` and 32 lowercase hex digits.
    public static func isMessageSID(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 34, bytes[1] == UInt8(ascii: "M"), bytes[0] == UInt8(ascii: "S") || bytes[0] == UInt8(ascii: "M") else {
            return false
        }
        return bytes.dropFirst(2).allSatisfy(isLowercaseHex)
    }

    /// Whether `text` has the shape of an account SID: `AC` and 32 lowercase hex digits.
    public static func isAccountSID(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.count == 34 && text.hasPrefix("AC") && bytes.dropFirst(2).allSatisfy(isLowercaseHex)
    }

    // MARK: Names

    /// What Twilio sends to an incoming-message webhook (Messaging: "Twilio's request to
    /// your incoming message webhook URL"), including the location, WhatsApp and add-on fields.
    static let inboundNames: Set<String> = [
        "MessageSid", "SmsSid", "SmsMessageSid", "AccountSid", "MessagingServiceSid", "From", "To", "Body",
        "NumMedia", "NumSegments", "SmsStatus", "ApiVersion", "OptOutType",
        "FromCity", "FromState", "FromZip", "FromCountry", "ToCity", "ToState", "ToZip", "ToCountry",
        "AddOns", "ProfileName", "WaId", "Forwarded", "FrequentlyForwarded", "ButtonText", "ButtonPayload",
        "ReferralNumMedia", "ReferralBody", "ReferralHeadline", "ReferralSourceId", "ReferralSourceType", "ReferralSourceUrl",
        "ReferralMediaId", "ReferralMediaContentType", "ReferralMediaUrl", "ReferralCtwaClid",
        "Latitude", "Longitude", "Address", "Label", "ChannelMetadata", "MessageType",
    ]
    /// `MediaUrl0`, `MediaContentType0`, ...: one per attachment.
    static let inboundIndexedPrefixes = ["MediaUrl", "MediaContentType"]

    /// What Twilio sends to a message's status callback.
    static let statusNames: Set<String> = [
        "MessageSid", "SmsSid", "SmsMessageSid", "AccountSid", "MessagingServiceSid", "From", "To", "Body",
        "MessageStatus", "SmsStatus", "ErrorCode", "ErrorMessage", "ApiVersion", "RawDlrDoneDate",
        "ChannelInstallSid", "ChannelPrefix", "ChannelToAddress", "ChannelStatusMessage", "StructuredMessage",
        "NumMedia", "NumSegments",
    ]

    // MARK: Checks

    /// The form as a dictionary, once every name is one Twilio sends here, none is repeated,
    /// and the account is ours. Values are not stored (only the checked id is), so their
    /// text is left as it came.
    static func checked(
        _ pairs: [(String, String)], allowed: Set<String>, allowedPrefixes: [String], accountSID: String,
        violations: inout Violations
    ) -> [String: String] {
        var form: [String: String] = [:]
        for (name, value) in pairs {
            guard allowed.contains(name) || isIndexed(name, prefixes: allowedPrefixes) else {
                violations.append(printable(name), "is not a parameter this webhook receives")
                continue
            }
            guard form[name] == nil else {
                violations.append(name, "appears more than once")
                continue
            }
            form[name] = value
        }
        if let version = form["ApiVersion"], version != "2010-04-01" {
            violations.append("ApiVersion", "must be 2010-04-01")
        }
        switch form["AccountSid"] {
        case nil: violations.append("AccountSid", "is required")
        case let account? where account != accountSID: violations.append("AccountSid", "is not this service's account")
        default: break
        }
        return form
    }

    /// `MessageSid`, required and of Twilio's shape; `SmsSid` and `SmsMessageSid`, where
    /// present, must be the same id.
    static func messageSID(_ form: [String: String], violations: inout Violations) -> String {
        guard let sid = form["MessageSid"], !sid.isEmpty else {
            violations.append("MessageSid", "is required")
            return ""
        }
        guard isMessageSID(sid) else {
            violations.append("MessageSid", "must be SM or MM followed by 32 lowercase hexadecimal digits")
            return ""
        }
        for alias in ["SmsSid", "SmsMessageSid"] {
            if let other = form[alias], other != sid { violations.append(alias, "must equal MessageSid") }
        }
        return sid
    }

    static func isIndexed(_ name: String, prefixes: [String]) -> Bool {
        prefixes.contains { prefix in
            guard name.hasPrefix(prefix) else { return false }
            let index = name.utf8.dropFirst(prefix.utf8.count)
            return (1...2).contains(index.count) && index.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
        }
    }

    static func isLowercaseHex(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
    }

    /// A field name as an error may quote it: short, and without control characters.
    static func printable(_ name: String) -> String {
        let cleaned = String(name.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }.prefix(64).map(Character.init))
        return cleaned.isEmpty ? "(unnamed parameter)" : cleaned
    }
}

extension TwilioWebhook {
    /// Every problem found with one webhook's parameters.
    public struct Violations: Error, Sendable, Equatable {
        public private(set) var all: [Violation] = []

        mutating func append(_ field: String, _ message: String) {
            // An attacker's form can be long; a handful of reasons is enough to act on.
            if all.count < 20 { all.append(Violation(field: field, message: message)) }
        }

        func throwIfAny() throws(Violations) {
            if !all.isEmpty { throw self }
        }
    }
}
