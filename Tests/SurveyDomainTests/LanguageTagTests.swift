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

    @Test func primaryLanguage() throws {
        #expect(try LanguageTag(parsing: "en-GB").primaryLanguage == "en")
        #expect(try LanguageTag(parsing: "fr").primaryLanguage == "fr")
    }
}
