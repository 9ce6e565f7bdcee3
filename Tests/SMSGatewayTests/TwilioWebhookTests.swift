import SMSGateway
import Testing

/// The parameters behind the signature (issue 12): a genuinely signed reply rewritten
/// across a name/value boundary keeps its signature, so the parameters must refuse it.
@Suite struct TwilioWebhookTests {
    static let account = "AC0123456789abcdef0123456789abcdef"
    static let sid = "SM0123456789abcdef0123456789abcdef"
    static let url = "https://surveys.example.com/webhooks/twilio/sms"

    /// A reply as Twilio sends it.
    static let genuine: [(String, String)] = [
        ("ToCountry", "BE"), ("SmsMessageSid", sid), ("NumMedia", "0"), ("SmsSid", sid), ("SmsStatus", "received"),
        ("Body", "9"), ("To", "+3288000"), ("NumSegments", "1"), ("MessageSid", sid), ("AccountSid", account),
        ("From", "+32470000001"), ("ApiVersion", "2010-04-01"), ("MediaUrl0", "https://api.twilio.com/x"),
        ("MediaContentType0", "image/jpeg"),
    ]

    static func rewritten(_ pairs: [(String, String)], _ replacements: [String: (String, String)?]) -> [(String, String)] {
        var result: [(String, String)] = []
        for pair in pairs {
            if let replacement = replacements[pair.0] {
                if let replacement { result.append(replacement) }
            } else {
                result.append(pair)
            }
        }
        return result
    }

    func assertSameSignature(_ pairs: [(String, String)]) {
        let signature = TwilioSignature.sign(url: Self.url, parameters: Self.genuine, authToken: "token")
        #expect(TwilioSignature.isValid(signature: signature, url: Self.url, parameters: pairs, authToken: "token"))
    }

    @Test func acceptsWhatTwilioSends() throws {
        let inbound = try TwilioWebhook.inbound(Self.genuine, accountSID: Self.account)
        #expect(inbound == .init(messageSID: Self.sid, from: "+32470000001", body: "9"))
    }

    @Test func refusesMessageSidMovedIntoItsName() {
        // MessageSid=SMx → MessageSidS=Mx: the same signature, and no MessageSid.
        let replay = Self.rewritten(Self.genuine, ["MessageSid": ("MessageSidS", String(Self.sid.dropFirst()))])
        assertSameSignature(replay)
        let violations = fields(replay)
        #expect(violations.contains("MessageSidS"))
        #expect(violations.contains("MessageSid"))
    }

    @Test func refusesSmsSidSwallowingTheNextParameter() {
        // SmsSid=SMx + SmsStatus=received → SmsSid=SMxSmsStatusreceived: the same signature.
        let replay = Self.rewritten(
            Self.genuine, ["SmsSid": ("SmsSid", Self.sid + "SmsStatusreceived"), "SmsStatus": nil])
        assertSameSignature(replay)
        #expect(fields(replay) == ["SmsSid"])
        // …and the same with MessageSid folded into the value before it, so that a server
        // falling back to SmsSid would have taken it as a new message.
        let both = Self.rewritten(replay, ["MessageSid": nil, "From": ("From", "+32470000001MessageSid" + Self.sid)])
        #expect(fields(both).contains("MessageSid"))
    }

    /// The review's find: `ApiVersion` swallowing `Body` (sorted next to each other) would
    /// blank the reply into a bad response under the same signature.
    @Test func refusesApiVersionSwallowingTheBody() {
        let replay = Self.rewritten(Self.genuine, ["ApiVersion": ("ApiVersion", "2010-04-01Body9"), "Body": nil])
        #expect(Set(fields(replay)) == ["ApiVersion", "Body"])
    }

    @Test(arguments: [
        "", "SM", "sm0123456789abcdef0123456789abcdef", "SM0123456789ABCDEF0123456789ABCDEF", "SM0123456789abcdef0123456789abcde",
        "SM0123456789abcdef0123456789abcdef0", "XX0123456789abcdef0123456789abcdef", "SM\u{0}123456789abcdef0123456789abcdef",
        String(repeating: "S", count: 10_000),
    ])
    func refusesMessageSidsOfAnotherShape(_ sid: String) {
        let form = Self.rewritten(Self.genuine, ["MessageSid": ("MessageSid", sid), "SmsSid": nil, "SmsMessageSid": nil])
        #expect(fields(form) == ["MessageSid"])
    }

    @Test func acceptsMMSIds() throws {
        let mms = "MM" + Self.sid.dropFirst(2)
        let form = Self.rewritten(Self.genuine, ["MessageSid": ("MessageSid", mms), "SmsSid": ("SmsSid", mms), "SmsMessageSid": nil])
        #expect(try TwilioWebhook.inbound(form, accountSID: Self.account).messageSID == mms)
    }

    @Test func refusesAnotherAccountOrNone() {
        let other = Self.rewritten(Self.genuine, ["AccountSid": ("AccountSid", "AC" + String(repeating: "f", count: 32))])
        #expect(fields(other) == ["AccountSid"])
        #expect(fields(Self.rewritten(Self.genuine, ["AccountSid": nil])) == ["AccountSid"])
    }

    @Test func refusesRepeatedAndUnknownNames() {
        #expect(fields(Self.genuine + [("Body", "10")]) == ["Body"])
        #expect(fields(Self.genuine + [("MediaUrl", "x"), ("MediaUrl123", "x"), ("Evil", "x")]) == ["MediaUrl", "MediaUrl123", "Evil"])
    }

    @Test func statusCallbacks() throws {
        let callback: [(String, String)] = [
            ("MessageSid", Self.sid), ("SmsSid", Self.sid), ("AccountSid", Self.account), ("MessageStatus", "undelivered"),
            ("SmsStatus", "undelivered"), ("ErrorCode", "30003"), ("To", "+32470000001"), ("From", "+3288000"),
            ("ApiVersion", "2010-04-01"),
        ]
        #expect(try TwilioWebhook.statusCallback(callback, accountSID: Self.account)
            == .init(messageSID: Self.sid, status: "undelivered", errorCode: "30003"))
        // The same rewrite against a status callback.
        let replay = Self.rewritten(callback, ["SmsSid": ("SmsSid", Self.sid + "SmsStatusundelivered"), "SmsStatus": nil])
        #expect(throws: TwilioWebhook.Violations.self) { try TwilioWebhook.statusCallback(replay, accountSID: Self.account) }
        let disagreeing = Self.rewritten(callback, ["SmsStatus": ("SmsStatus", "delivered")])
        #expect(throws: TwilioWebhook.Violations.self) { try TwilioWebhook.statusCallback(disagreeing, accountSID: Self.account) }
        // An empty status is none (the fuzzer's find).
        let empty = Self.rewritten(callback, ["MessageStatus": ("MessageStatus", ""), "SmsStatus": ("SmsStatus", "")])
        #expect(throws: TwilioWebhook.Violations.self) { try TwilioWebhook.statusCallback(empty, accountSID: Self.account) }
        // A reply's parameters are not a status callback's.
        #expect(throws: TwilioWebhook.Violations.self) { try TwilioWebhook.statusCallback(Self.genuine, accountSID: Self.account) }
    }

    /// The fields an inbound form is refused for; empty if it is accepted.
    func fields(_ form: [(String, String)]) -> [String] {
        do {
            _ = try TwilioWebhook.inbound(form, accountSID: Self.account)
            return []
        } catch {
            return error.all.map(\.field)
        }
    }
}
