/// A BCP 47 language tag (RFC 5646), well-formed and in canonical case:
/// language lowercase (`fr`), script title case (`Latn`), region uppercase (`BE`), the rest
/// lowercase. `en-gb` becomes `en-GB`, `FR` becomes `fr`, `zh-hant-tw` becomes `zh-Hant-TW`.
///
/// The API reference calls these "ISO 15924" loosely; tags are what clients actually send.
public struct LanguageTag: Hashable, Sendable, CustomStringConvertible, Codable {
    public let value: String

    /// The primary language subtag (`en` for `en-GB`), lowercase.
    public var primaryLanguage: Substring {
        value.split(separator: "-", maxSplits: 1).first ?? Substring(value)
    }

    public var description: String { value }

    public static let maximumLength = 64

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case empty, tooLong, malformed(String)
        public var description: String {
            switch self {
            case .empty: "must not be empty"
            case .tooLong: "must be at most \(LanguageTag.maximumLength) characters"
            case .malformed(let reason): "is not a BCP 47 language tag (e.g. en-GB, fr, nl-BE): \(reason)"
            }
        }
    }

    /// Parses a tag; surrounding whitespace is ignored (clients of the original API sent it).
    public init(parsing text: String) throws(ParseError) {
        if Self.isCanonicalLanguageAndRegion(text) {
            value = text
            return
        }
        let trimmed = text.trimmingASCIIWhitespace()
        guard !trimmed.isEmpty else { throw .empty }
        guard trimmed.utf8.count <= Self.maximumLength else { throw .tooLong }
        guard trimmed.utf8.allSatisfy({ $0 == UInt8(ascii: "-") || $0.isASCIIAlphanumeric }) else {
            throw .malformed("only letters, digits and '-' are allowed")
        }
        let subtags = trimmed.split(separator: "-", omittingEmptySubsequences: false).map { String($0) }
        guard !subtags.contains(where: \.isEmpty) else { throw .malformed("empty subtag") }
        value = try Self.canonicalize(subtags)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do {
            try self.init(parsing: text)
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }

    /// Whether `text` is `ll`, `lll`, `ll-RR` or `lll-RR` (ISO 639 language, ISO 3166
    /// region) in canonical case: nearly every tag clients send and every tag read back
    /// from the database, checked without splitting or allocating.
    private static func isCanonicalLanguageAndRegion(_ text: String) -> Bool {
        let bytes = text.utf8
        let count = bytes.count
        guard count == 2 || count == 3 || count == 5 || count == 6 else { return false }
        let languageLength = count == 2 || count == 5 ? 2 : 3
        for (offset, byte) in bytes.enumerated() {
            switch offset {
            case ..<languageLength:
                guard (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) else { return false }
            case languageLength:
                guard byte == UInt8(ascii: "-") else { return false }
            default:
                guard (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) else { return false }
            }
        }
        return true
    }

    private static func canonicalize(_ subtags: [String]) throws(ParseError) -> String {
        var output: [String] = []
        var index = 0
        func peek() -> String? { index < subtags.count ? subtags[index] : nil }

        // A tag made only of private use: x-whatever.
        if subtags[0].lowercased() == "x" {
            return try privateUse(subtags, from: 0)
        }
        // language: an ISO 639 code of 2 or 3 letters (+ up to three 3-letter extlangs).
        // RFC 5646 also reserves 4 and 5-8 letter languages, but none is registered: such a
        // "language" is a mistake ("english"), better refused than stored.
        let language = subtags[0]
        guard language.isAlpha, (2...3).contains(language.count) else {
            throw .malformed("the language subtag must be an ISO 639 code of 2 or 3 letters")
        }
        output.append(language.lowercased())
        index = 1
        if language.count <= 3 {
            var extlangs = 0
            while let next = peek(), next.count == 3, next.isAlpha, extlangs < 3 {
                output.append(next.lowercased())
                extlangs += 1
                index += 1
            }
        }
        if let next = peek(), next.count == 4, next.isAlpha {
            output.append(next.prefix(1).uppercased() + next.dropFirst().lowercased())
            index += 1
        }
        if let next = peek(), (next.count == 2 && next.isAlpha) || (next.count == 3 && next.isDigits) {
            output.append(next.uppercased())
            index += 1
        }
        var variants: Set<String> = []
        while let next = peek(),
            (5...8).contains(next.count) || (next.count == 4 && next.first!.isASCIIDigitCharacter)
        {
            let variant = next.lowercased()
            guard variants.insert(variant).inserted else { throw .malformed("variant '\(variant)' repeated") }
            output.append(variant)
            index += 1
        }
        var singletons: Set<String> = []
        while let next = peek(), next.count == 1 {
            let singleton = next.lowercased()
            if singleton == "x" {
                output.append(try privateUse(subtags, from: index))
                return output.joined(separator: "-")
            }
            guard singletons.insert(singleton).inserted else { throw .malformed("extension '\(singleton)' repeated") }
            output.append(singleton)
            index += 1
            var count = 0
            while let part = peek(), (2...8).contains(part.count) {
                output.append(part.lowercased())
                index += 1
                count += 1
            }
            guard count > 0 else { throw .malformed("extension '\(singleton)' has no subtags") }
        }
        guard index == subtags.count else { throw .malformed("unexpected subtag '\(subtags[index])'") }
        return output.joined(separator: "-")
    }

    private static func privateUse(_ subtags: [String], from start: Int) throws(ParseError) -> String {
        let rest = subtags[(start + 1)...]
        guard !rest.isEmpty, rest.allSatisfy({ (1...8).contains($0.count) }) else {
            throw .malformed("private use subtags must be 1 to 8 characters")
        }
        return (["x"] + rest.map { $0.lowercased() }).joined(separator: "-")
    }
}

extension UInt8 {
    var isASCIIAlphanumeric: Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(self) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(self)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self)
    }
}

extension Character {
    var isASCIIDigitCharacter: Bool { isASCII && isNumber }
}

extension String {
    var isAlpha: Bool { !isEmpty && allSatisfy { $0.isASCII && $0.isLetter } }
    var isDigits: Bool { !isEmpty && allSatisfy { $0.isASCIIDigitCharacter } }

    /// Drops leading and trailing spaces, tabs and newlines (no Foundation needed).
    public func trimmingASCIIWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let start = firstIndex(where: { !isSpace($0) }), let end = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[start...end])
    }
}
