import Foundation
import SurveyDomain
import Testing

@Suite struct PhoneNumberTests {
    @Test(arguments: ["+32472306705", "+12025550123", "+447911123456", "+861234567890123", "+12345678"])
    func acceptsE164(_ text: String) {
        #expect(PhoneNumber(e164: text)?.e164 == text)
    }

    @Test(arguments: [
        "", "+", "32472306705", "0472306705", "+0472306705", "+32 472 30 67 05", "+32-472306705", "+3247230670a",
        "+1234567", "+1234567890123456", "00324723067", "+32472306705\n", "＋32472306705", "+٣٢٤٧٢٣٠٦٧٠٥",
    ])
    func rejectsEverythingElse(_ text: String) {
        #expect(PhoneNumber(e164: text) == nil)
    }

    @Test func neverPrintsTheNumber() {
        let number = PhoneNumber(e164: "+32472306705")!
        #expect(!"\(number)".contains("472"))
    }
}

@Suite struct ReplyParserTests {
    @Test(arguments: [
        ("9", 9), (" 10!", 10), ("8/10", 8), ("7.", 7), ("0", 0), ("10", 10), ("05", 5), (" 6 ", 6), ("9!!", 9),
        ("nine", 9), ("Neuf", 9), ("negen", 9), ("TEN", 10), ("zéro", 0), ("nul", 0), ("dix.", 10), ("8 / 10", 8),
        ("\u{00A0}7\u{00A0}", 7),
    ])
    func goodResponses(_ body: String, _ score: Int) {
        #expect(ReplyParser.parse(body) == .score(score))
    }

    @Test(arguments: ["11", "-1", "7,5", "8.5", "great", "", "   ", "9 10", "10/10/10", "1O", "100", "nine!?x", "٩", "9️⃣"])
    func badResponses(_ body: String) {
        #expect(ReplyParser.parse(body) == .bad)
    }

    // The CTIA keywords Twilio applies, in the shapes people send them (issue 12: each of
    // these was counted as a bad reply), and their French and Dutch equivalents.
    @Test(arguments: [
        "STOP", "stop", " Stop ", "STOP.", "Stop please", "stop all", "STOP ALL!", "STOPALL", "UNSUBSCRIBE", "CANCEL",
        "END", "QUIT", "OPTOUT", "opt-out", "Opt out", "REVOKE", "please stop", "Unsubscribe me, thanks",
        "ARRET", "ARRÊT", "arrêt", "Arrêt s'il vous plaît", "STOPPEN", "Afmelden a.u.b.", "Uitschrijven", "désabonner",
        "J'arrête", "j’arrête merci", "Arrêtez", "Stop ermee", "Ik stop",
    ])
    func optOut(_ body: String) {
        #expect(ReplyParser.parse(body) == .optOut)
    }

    @Test(arguments: ["START", "start.", "YES", "Yes!", "UNSTOP", "Démarrer", "oui", "Aanmelden", "ja"])
    func optIn(_ body: String) {
        #expect(ReplyParser.parse(body) == .optIn)
    }

    @Test(arguments: [("HELP", "en"), ("help?", "en"), ("Info", "en"), ("AIDE", "fr"), ("hulp", "nl")])
    func help(_ body: String, _ language: String) {
        #expect(ReplyParser.parse(body) == .help(language: language))
    }

    /// A keyword inside a sentence is not the customer asking for it.
    @Test(arguments: [
        "don't stop", "I will stop buying here", "stop 9", "9 stop", "stop stop now?x", "stopp", "yes 10",
        "unsubscribe " + String(repeating: "please ", count: 10), "the end", "helpful",
    ])
    func keywordsMustBeTheWholeMessage(_ body: String) {
        #expect(ReplyParser.parse(body) == .bad)
    }
}

@Suite struct SMSSegmentsTests {
    @Test func gsm7Boundaries() {
        #expect(SMSSegments(body: String(repeating: "a", count: 160)) == .init(encoding: .gsm7, units: 160, count: 1))
        #expect(SMSSegments(body: String(repeating: "a", count: 161)).count == 2)
        #expect(SMSSegments(body: String(repeating: "a", count: 306)).count == 2)
        #expect(SMSSegments(body: String(repeating: "a", count: 307)).count == 3)
        // Extension characters take two septets.
        #expect(SMSSegments(body: String(repeating: "€", count: 80)).units == 160)
        #expect(SMSSegments(body: String(repeating: "€", count: 80)).count == 1)
        #expect(SMSSegments(body: String(repeating: "€", count: 81)).count == 2)
        #expect(SMSSegments(body: "").count == 1)
    }

    @Test func oneCharacterOutsideGSMSwitchesToUCS2() {
        #expect(SMSSegments(body: String(repeating: "a", count: 69) + "ł") == .init(encoding: .ucs2, units: 70, count: 1))
        #expect(SMSSegments(body: String(repeating: "a", count: 70) + "ł").count == 2)
        #expect(SMSSegments(body: String(repeating: "a", count: 134)).encoding == .gsm7)
        #expect(SMSSegments(body: String(repeating: "é", count: 134) + "ç").count == 3)  // ç is not GSM-7, Ç is
        // Emoji take two UTF-16 units.
        #expect(SMSSegments(body: String(repeating: "😀", count: 35)).count == 1)
        #expect(SMSSegments(body: String(repeating: "😀", count: 36)).count == 2)
        #expect(SMSSegments(body: "Quelle est la probabilité, sur une échelle de 0-10 ?").encoding == .gsm7)
    }
}

@Suite struct DestinationHasherTests {
    let key = String(repeating: "ab", count: 32)

    @Test func hashesWithHMACSHA256() throws {
        let hasher = try DestinationHasher(hexKey: key)
        let hash = hasher.hash(PhoneNumber(e164: "+32472306705")!)
        // python3 -c "import hmac,hashlib;print(hmac.new(bytes.fromhex('ab'*32),b'+32472306705',hashlib.sha256).hexdigest())"
        #expect(hash.map { String(format: "%02x", $0) }.joined() == Self.expected)
        #expect(hasher.hash(PhoneNumber(e164: "+32472306706")!) != hash)
    }

    static let expected = "83855d20fc0d23dfeb2dd2e3cc967a82b879d8a3dbed40a3b3b68212c75b6134"

    @Test func refusesMissingOrMalformedKeys() {
        #expect(throws: DestinationHasher.KeyError.missing) { try DestinationHasher(hexKey: nil) }
        #expect(throws: DestinationHasher.KeyError.missing) { try DestinationHasher(hexKey: "") }
        #expect(throws: DestinationHasher.KeyError.malformed) { try DestinationHasher(hexKey: "abcd") }
        #expect(throws: DestinationHasher.KeyError.malformed) { try DestinationHasher(hexKey: String(repeating: "zz", count: 32)) }
    }
}

@Suite struct QuestionChoiceTests {
    func survey(_ languages: [String]) throws -> Survey {
        Survey(
            id: SurveyID(1), name: "s", interactionType: "t",
            questions: try languages.enumerated().map {
                Question(id: QuestionID(Int64($0.offset + 1)), body: $0.element, language: try LanguageTag(parsing: $0.element))
            })
    }

    @Test func exactThenPrimaryLanguageThenFirst() throws {
        let survey = try survey(["nl-BE", "en", "fr-BE", "en-GB"])
        #expect(survey.question(for: try LanguageTag(parsing: "en-GB"))?.body == "en-GB")
        #expect(survey.question(for: try LanguageTag(parsing: "en-US"))?.body == "en")
        #expect(survey.question(for: try LanguageTag(parsing: "fr"))?.body == "fr-BE")
        #expect(survey.question(for: try LanguageTag(parsing: "de"))?.body == "nl-BE")
        #expect(survey.question(for: nil)?.body == "nl-BE")
    }
}
