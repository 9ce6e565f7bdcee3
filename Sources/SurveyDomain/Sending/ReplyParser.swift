import Foundation

/// What a customer's SMS reply means.
public enum Reply: Equatable, Sendable {
    /// A score from 0 to 10.
    case score(Int)
    /// Anything else: counted as a bad response.
    case bad
    /// STOP and its synonyms: no more surveys to this number, from any company.
    case optOut
    /// START and its synonyms: surveys welcome again.
    case optIn
    /// HELP: answered with who we are and how to stop, in the language the keyword was in.
    case help(language: String)
}

public enum ReplyParser {
    /// The carriers' standard keywords (the CTIA list, which Twilio applies) and their
    /// French and Dutch equivalents, compared after `keyword(of:)` normalised the message.
    static let optOutWords: Set<String> = [
        "stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout",
        // French
        "arret", "arreter", "arretez", "jarrete", "desabonner", "desinscrire", "desinscription", "annuler", "fin",
        // Dutch
        "stoppen", "afmelden", "uitschrijven", "opzeggen", "einde", "stopermee", "ikstop",
    ]
    static let optInWords: Set<String> = [
        "start", "yes", "unstop",
        "commencer", "demarrer", "oui", "reprendre",
        "aanmelden", "ja", "hervatten",
    ]
    static let helpWords: [String: String] = ["help": "en", "info": "en", "aide": "fr", "hulp": "nl"]
    /// Words that may stand beside a keyword without changing what the message asks for
    /// ("Stop please", "stop all", "STOP svp"). Anything else makes it a sentence, and a
    /// sentence that merely contains "stop" ("don't stop", "I will stop buying") is not one.
    static let courtesyWords: Set<String> = [
        "please", "pls", "plz", "all", "now", "thanks", "thank", "you", "thx", "me",
        "svp", "stp", "merci", "sil", "vous", "plait", "tout",
        "aub", "alstublieft", "graag", "bedankt", "dank", "je", "alles",
    ]

    /// Number words 0–10 in English, French and Dutch.
    static let numberWords: [String: Int] = {
        let english = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
        let french = ["zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix"]
        let dutch = ["nul", "een", "twee", "drie", "vier", "vijf", "zes", "zeven", "acht", "negen", "tien"]
        var words: [String: Int] = [:]
        for list in [english, french, dutch] {
            for (value, word) in list.enumerated() { words[word] = value }
        }
        words["zero"] = 0
        words["zéro"] = 0
        words["une"] = 1
        words["één"] = 1
        return words
    }()

    /// Reads a reply: an integer 0–10, optionally followed by `/10` or trailing punctuation
    /// (`9`, ` 10!`, `8/10`, `7.`), or a number word; an opt-out, opt-in or help keyword as
    /// the whole message, in any case and punctuation (`STOP.`, `Stop please`, `stop all`).
    /// Everything else (`11`, `-1`, `7,5`, `8.5`, `great`, `don't stop`, empty) is `.bad`.
    public static func parse(_ body: String) -> Reply {
        let trimmed = body.trimmingASCIIWhitespace().trimmingUnicodeWhitespace()
        let lowered = trimmed.lowercased()
        if let keyword = keyword(of: lowered) {
            if optOutWords.contains(keyword) { return .optOut }
            if optInWords.contains(keyword) { return .optIn }
            if let language = helpWords[keyword] { return .help(language: language) }
        }

        // Drop trailing punctuation (`!`, `.`, `?`), but not digits or separators that
        // would change the number (`7,5` stays bad).
        var text = Substring(lowered)
        while let last = text.last, "!.?;:)".contains(last) { text = text.dropLast() }
        text = Substring(String(text).trimmingASCIIWhitespace())
        // "8/10", "8 / 10": out of ten.
        if let slash = text.lastIndex(of: "/"), String(text[text.index(after: slash)...]).trimmingASCIIWhitespace() == "10" {
            text = Substring(String(text[..<slash]).trimmingASCIIWhitespace())
        }

        if !text.isEmpty, text.count <= 2, text.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(text), (0...10).contains(value) {
            return .score(value)
        }
        if let value = numberWords[String(text)] { return .score(value) }
        return .bad
    }

    /// The message as one keyword, if it is one: letters only, accents folded, courtesy
    /// words dropped, and what is left joined (`"Stop all!"` → `"stop"`, `"opt out"` →
    /// `"optout"`, `"Arrêt."` → `"arret"`). `nil` for an empty or long message, or one with
    /// digits (a score is never a keyword).
    static func keyword(of lowered: String) -> String? {
        // Real keyword messages are short; a long text is a sentence whatever it holds.
        guard lowered.unicodeScalars.count <= 40 else { return nil }
        var folded = lowered.folding(options: [.diacriticInsensitive], locale: nil)
        // Abbreviations written with dots are one courtesy word ("a.u.b.", "s.v.p.").
        for (dotted, word) in [("a.u.b", "aub"), ("s.v.p", "svp"), ("s.t.p", "stp")] {
            folded = folded.replacingOccurrences(of: dotted, with: word)
        }
        var words: [String] = []
        var word = ""
        for scalar in folded.unicodeScalars {
            if scalar.properties.isAlphabetic {
                word.unicodeScalars.append(scalar)
            } else if scalar.properties.numericType != nil {
                return nil
            } else if scalar == "'" || scalar == "’" {
                // "s'il" is one courtesy word, "don't" stays a word of its own.
                continue
            } else if !word.isEmpty {
                words.append(word)
                word = ""
            }
        }
        if !word.isEmpty { words.append(word) }
        let meaningful = words.filter { !courtesyWords.contains($0) }
        guard !meaningful.isEmpty else { return nil }
        return meaningful.joined()
    }
}

extension String {
    /// Also drops non-ASCII spaces some phones insert (no-break space, ideographic space).
    func trimmingUnicodeWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0.isWhitespace }
        guard let start = firstIndex(where: { !isSpace($0) }), let end = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[start...end])
    }
}
