/// The parameters of Twilio's voice webhooks (the TwiML requests of a call, its `<Gather>`
/// action, and its status callback), checked as the messaging ones are: Twilio's names
/// only, a call id of Twilio's shape, our account.
extension TwilioWebhook {
    public struct CallEvent: Sendable, Equatable {
        public var callSID: String
        /// Lowercased (`in-progress`, `completed`, `busy`, `no-answer`, `failed`, `canceled`, ...).
        public var status: String
        /// `human`, `machine_start`, `fax`, `unknown`, ... when answering-machine detection ran.
        public var answeredBy: String?
        /// What the caller keyed (the `<Gather>` action only).
        public var digits: String?
        /// Seconds the call lasted (the final status callback).
        public var duration: Int?

        public init(callSID: String, status: String, answeredBy: String? = nil, digits: String? = nil, duration: Int? = nil) {
            self.callSID = callSID
            self.status = status
            self.answeredBy = answeredBy
            self.digits = digits
            self.duration = duration
        }

        /// A machine or a fax answered: nobody will key a score.
        public var answeredByMachine: Bool {
            guard let answeredBy = answeredBy?.lowercased() else { return false }
            return answeredBy.hasPrefix("machine") || answeredBy == "fax"
        }
    }

    /// Any of a call's webhooks.
    public static func callEvent(_ pairs: [(String, String)], accountSID: String) throws(Violations) -> CallEvent {
        var violations = Violations()
        let form = checked(pairs, allowed: voiceNames, allowedPrefixes: [], accountSID: accountSID, violations: &violations)
        var sid = ""
        switch form["CallSid"] {
        case nil, ""?: violations.append("CallSid", "is required")
        case let value? where !isCallSID(value): violations.append("CallSid", "must be CA followed by 32 lowercase hexadecimal digits")
        case let value?: sid = value
        }
        let status = form["CallStatus"]?.lowercased() ?? ""
        if status.isEmpty {
            violations.append("CallStatus", "is required")
        } else if status.count > 32 || !status.allSatisfy({ $0.isASCII && ($0.isLetter || $0 == "-") }) {
            violations.append("CallStatus", "is not a call status")
        }
        if let digits = form["Digits"], digits.count > 32 {
            violations.append("Digits", "is longer than any keypad input this service asks for")
        }
        var duration: Int?
        if let text = form["CallDuration"] {
            duration = Int(text)
            if duration == nil || duration! < 0 || duration! > 99_999 { violations.append("CallDuration", "must be seconds, at most 99999") }
        }
        if let answeredBy = form["AnsweredBy"], answeredBy.count > 32 { violations.append("AnsweredBy", "is too long") }
        try violations.throwIfAny()
        return CallEvent(callSID: sid, status: status, answeredBy: form["AnsweredBy"], digits: form["Digits"], duration: duration)
    }

    /// Whether `text` has the shape of a call SID: `CA` and 32 lowercase hex digits.
    public static func isCallSID(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.count == 34 && text.hasPrefix("CA") && bytes.dropFirst(2).allSatisfy(isLowercaseHex)
    }

    /// What Twilio sends to a call's TwiML URL, its `<Gather>` action and its status
    /// callback (Voice: "Twilio's request to your application", answering-machine
    /// detection, `<Gather>`, status callbacks).
    static let voiceNames: Set<String> = [
        "CallSid", "AccountSid", "From", "To", "CallStatus", "ApiVersion", "Direction", "ForwardedFrom", "CallerName",
        "ParentCallSid", "CallToken", "Called", "Caller",
        "CalledCity", "CalledState", "CalledZip", "CalledCountry", "CallerCity", "CallerState", "CallerZip", "CallerCountry",
        "FromCity", "FromState", "FromZip", "FromCountry", "ToCity", "ToState", "ToZip", "ToCountry",
        "StirVerstat", "StirPassportToken", "AnsweredBy", "MachineDetectionDuration", "Digits", "FinishedOnKey", "msg",
        "CallDuration", "Duration", "Timestamp", "CallbackSource", "SequenceNumber", "SipResponseCode",
        "ErrorCode", "ErrorMessage", "QueueTime", "TrunkSid",
    ]
}
