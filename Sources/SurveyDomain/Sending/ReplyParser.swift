/// What a customer's SMS reply means.
public enum Reply: Equatable, Sendable {
    /// A score from 0 to 10.
    case score(Int)
    /// Anything else: counted as a bad response.
    case bad
    /// STOP and its synonyms: no more surveys to this number, from any company.
    case optOut
    /// START: surveys welcome again.
    case optIn
}

public enum ReplyParser {
    static let optOutWords: Set<String> = ["stop", "stopall", "unsubscribe", "arret", "arrêt", "stoppen", "cancel", "end", "quit"]
    static let optInWords: Set<String> = ["start", "unstop"]

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
    /// (`9`, ` 10!`, `8/10`, `7.`), or a number word; STOP/START keywords alone.
    /// Everything else (`11`, `-1`, `7,5`, `8.5`, `great`, empty) is `.bad`.
    public static func parse(_ body: String) -> Reply {
        let trimmed = body.trimmingASCIIWhitespace().trimmingUnicodeWhitespace()
        let lowered = trimmed.lowercased()
        if optOutWords.contains(lowered) { return .optOut }
        if optInWords.contains(lowered) { return .optIn }

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
}

extension String {
    /// Also drops non-ASCII spaces some phones insert (no-break space, ideographic space).
    func trimmingUnicodeWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0.isWhitespace }
        guard let start = firstIndex(where: { !isSpace($0) }), let end = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[start...end])
    }
}
