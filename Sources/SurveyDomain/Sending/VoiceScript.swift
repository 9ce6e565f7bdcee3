/// What a survey by phone call says, as TwiML: the question read in the request's language
/// inside a `<Gather>` of keypad digits, asked once more after a bad answer, then thanks
/// or a polite goodbye. Nothing spoken or keyed is kept but the score.
public struct VoiceScript: Sendable {
    /// The language `<Say>` speaks the question in (a voice the provider has).
    public let voice: String
    let words: VoiceWording
    /// The voice of the instructions: the question's, when we have words in its language;
    /// else English.
    let wordsVoice: String

    public init(language: LanguageTag?) {
        voice = Self.voice(for: language)
        if let localised = VoiceWording.localised(language) {
            words = localised
            wordsVoice = voice
        } else {
            words = .english
            wordsVoice = voice.hasPrefix("en-") ? voice : "en-US"
        }
    }

    /// Seconds the caller has to key a score once the question has been read.
    public static let gatherTimeout = 8

    /// The question and the way to answer, gathering up to two digits (`#` ends early);
    /// with no digit at all the call goes on to `action` without `Digits`.
    public func ask(_ question: String, action: String, again: Bool = false) -> String {
        let sorry = again ? say(words.sorry, in: wordsVoice) : ""
        return Self.document(
            sorry + ##"<Gather input="dtmf" numDigits="2" finishOnKey="#" timeout="\##(Self.gatherTimeout)" action="\##(action.markupEscaped)" method="POST">"##
                + say(question, in: voice) + say(words.instructions, in: wordsVoice) + "</Gather>"
                + #"<Redirect method="POST">\#(action.markupEscaped)</Redirect>"#)
    }

    public func thanks(score: Int) -> String {
        Self.document(say(words.thanks(score), in: wordsVoice) + "<Hangup/>")
    }

    /// After a second answer that was not a score.
    public var goodbye: String { Self.document(say(words.goodbye, in: wordsVoice) + "<Hangup/>") }

    /// A machine answered, or the call is not one of ours: nothing is said.
    public static let hangUp = document("<Hangup/>")

    /// The call's request is not recorded yet (the call was answered within the moment
    /// between the provider taking it and the worker writing it down): a second's pause,
    /// then the same URL again.
    public static func wait(andReturnTo url: String) -> String {
        document(#"<Pause length="1"/><Redirect method="POST">\#(url.markupEscaped)</Redirect>"#)
    }

    /// What a caller keyed, read as a score: `0` to `10` (`07` is 7); anything else is not one.
    public static func score(digits: String?) -> Int? {
        guard let digits, (1...2).contains(digits.utf8.count), digits.utf8.allSatisfy({ (48...57).contains($0) }),
            let value = Int(digits), (0...10).contains(value)
        else { return nil }
        return value
    }

    private func say(_ text: String, in language: String) -> String {
        #"<Say language="\#(language)">\#(text.markupEscaped)</Say>"#
    }

    private static func document(_ body: String) -> String {
        #"<?xml version="1.0" encoding="UTF-8"?><Response>"# + body + "</Response>"
    }

    // MARK: Languages

    /// The languages Twilio's `<Say>` speaks with its standard voices.
    static let spoken: Set<String> = [
        "ca-ES", "da-DK", "de-DE", "en-AU", "en-CA", "en-GB", "en-IN", "en-US", "es-ES", "es-MX", "fi-FI", "fr-CA", "fr-FR",
        "it-IT", "ja-JP", "ko-KR", "nb-NO", "nl-NL", "pl-PL", "pt-BR", "pt-PT", "ru-RU", "sv-SE", "zh-CN", "zh-HK", "zh-TW",
    ]
    /// A language's voice when its region has none of its own (`fr-BE` is read by `fr-FR`).
    static let defaultVoice: [String: String] = [
        "ca": "ca-ES", "da": "da-DK", "de": "de-DE", "en": "en-US", "es": "es-ES", "fi": "fi-FI", "fr": "fr-FR",
        "it": "it-IT", "ja": "ja-JP", "ko": "ko-KR", "nb": "nb-NO", "no": "nb-NO", "nl": "nl-NL", "pl": "pl-PL",
        "pt": "pt-PT", "ru": "ru-RU", "sv": "sv-SE", "zh": "zh-CN",
    ]

    /// The voice for a request's language: its own language and region if spoken, else its
    /// language's usual voice, else `en-US` (documented in docs/SENDING.md).
    public static func voice(for language: LanguageTag?) -> String {
        guard let language else { return "en-US" }
        let primary = String(language.primaryLanguage).lowercased()
        let region = language.value.split(separator: "-").dropFirst().first(where: { $0.count == 2 && $0.allSatisfy(\.isLetter) })
            .map { String($0).uppercased() }
        if let region, spoken.contains("\(primary)-\(region)") { return "\(primary)-\(region)" }
        return defaultVoice[primary] ?? "en-US"
    }
}

/// The words around the question on the phone, by the request's primary language.
struct VoiceWording: Sendable {
    var instructions: String
    var sorry: String
    var thanks: @Sendable (Int) -> String
    var goodbye: String

    static func localised(_ language: LanguageTag?) -> VoiceWording? {
        switch language?.primaryLanguage.lowercased() {
        case nil, "en": english
        case "fr": french
        case "nl": dutch
        case "de": german
        default: nil
        }
    }

    static let english = VoiceWording(
        instructions: "Please key in a score from 0 to 10, then press the hash key.",
        sorry: "Sorry, that is not a score from 0 to 10.",
        thanks: { "Thank you. Your score of \($0) is recorded. Goodbye." },
        goodbye: "We could not read a score. Thank you for your time. Goodbye.")
    static let french = VoiceWording(
        instructions: "Tapez une note de 0 à 10, puis la touche dièse.",
        sorry: "Désolé, ce n'est pas une note de 0 à 10.",
        thanks: { "Merci. Votre note de \($0) est enregistrée. Au revoir." },
        goodbye: "Nous n'avons pas pu lire de note. Merci de votre temps. Au revoir.")
    static let dutch = VoiceWording(
        instructions: "Toets een score van 0 tot 10 in, en druk dan op het hekje.",
        sorry: "Sorry, dat is geen score van 0 tot 10.",
        thanks: { "Bedankt. Uw score van \($0) is geregistreerd. Tot ziens." },
        goodbye: "We konden geen score lezen. Bedankt voor uw tijd. Tot ziens.")
    static let german = VoiceWording(
        instructions: "Bitte geben Sie eine Bewertung von 0 bis 10 ein und drücken Sie dann die Rautetaste.",
        sorry: "Das ist leider keine Bewertung von 0 bis 10.",
        thanks: { "Vielen Dank. Ihre Bewertung von \($0) ist gespeichert. Auf Wiederhören." },
        goodbye: "Wir konnten keine Bewertung lesen. Vielen Dank für Ihre Zeit. Auf Wiederhören.")
}
