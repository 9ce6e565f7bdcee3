import SurveyDomain
import Testing

@Suite struct LanguageTagTests {
    @Test(arguments: [
        ("en-GB", "en-GB"), ("en-gb", "en-GB"), ("EN-gb", "en-GB"), ("FR", "fr"), ("nl-BE", "nl-BE"),
        (" en-GB ", "en-GB"), ("zh-hant-tw", "zh-Hant-TW"), ("es-419", "es-419"), ("sr-latn", "sr-Latn"),
        ("de-CH-1996", "de-CH-1996"), ("en-US-x-twain", "en-US-x-twain"), ("x-whatever", "x-whatever"),
        ("zh-yue-HK", "zh-yue-HK"), ("en-a-bbb-x-a-ccc", "en-a-bbb-x-a-ccc"),
    ])
    func canonicalizes(input: String, expected: String) throws {
        #expect(try LanguageTag(parsing: input).value == expected)
    }

    @Test(arguments: [
        "", "   ", "e", "english-language", "en_GB", "en-", "-en", "en--GB", "12", "en-GB-GB-GB", "de-1996-1996",
        "en-a", "en-a-bb-a-cc", "fr\u{0}", "é", "en-GB;drop", String(repeating: "a", count: 65),
    ])
    func rejects(input: String) {
        #expect(throws: LanguageTag.ParseError.self) { try LanguageTag(parsing: input) }
    }

    /// The shortcut for `ll-RR`-shaped tags agrees with the full parse (which a leading
    /// space forces) on random inputs, whichever of them it takes.
    @Test func theCanonicalShortcutAgreesWithTheFullParse() {
        let alphabet = Array("abcdefgzABCDEFGZ-09é")
        for _ in 0..<5_000 {
            let text = String((0..<Int.random(in: 0...7)).map { _ in alphabet.randomElement()! })
            let direct = try? LanguageTag(parsing: text).value
            let full = try? LanguageTag(parsing: " " + text).value
            #expect(direct == full, "\(text)")
        }
    }

    @Test func primaryLanguage() throws {
        #expect(try LanguageTag(parsing: "en-GB").primaryLanguage == "en")
        #expect(try LanguageTag(parsing: "fr").primaryLanguage == "fr")
    }
}
