import Foundation
import SurveyDomain
import Testing

@Suite struct EmailSurveyContentTests {
    static func content(_ language: String?, question: String = "How likely are you to recommend Waffles & Co?") throws -> EmailSurveyContent {
        EmailSurveyContent(
            question: question, companyName: "Waffles & Co", language: try language.map { try LanguageTag(parsing: $0) },
            link: { "https://nps.example/r/TOKEN/\($0)" }, unsubscribe: "https://nps.example/u/TOKEN")
    }

    @Test func elevenScoreLinksInBothParts() throws {
        let content = try Self.content("en-GB")
        for score in 0...10 {
            #expect(content.text.contains("\(score): https://nps.example/r/TOKEN/\(score)\n") || content.text.contains("\(score): https://nps.example/r/TOKEN/\(score)"))
            #expect(content.html.contains(#"href="https://nps.example/r/TOKEN/\#(score)""#))
        }
        #expect(content.subject == "A quick question from Waffles & Co")
        #expect(content.text.contains("https://nps.example/u/TOKEN"))
        #expect(!content.html.contains("<script") && !content.html.contains("<img") && !content.html.contains("<link"))
    }

    @Test func theQuestionIsTextInTheHTML() throws {
        let content = try Self.content("en", question: "<b>Hi</b> & \"bye\"")
        #expect(content.html.contains("&lt;b&gt;Hi&lt;/b&gt; &amp; &quot;bye&quot;"))
        #expect(!content.html.contains("<b>Hi</b>"))
    }

    @Test(arguments: [("fr-BE", "Une petite question de Waffles & Co", "lang=\"fr-BE\""), ("nl", "Een korte vraag van Waffles & Co", "lang=\"nl\""),
                      ("de-AT", "Eine kurze Frage von Waffles & Co", "lang=\"de-AT\""), ("ja", "A quick question from Waffles & Co", "lang=\"ja\"")])
    func inTheRequestsLanguageWithEnglishForTheRest(_ language: String, _ subject: String, _ attribute: String) throws {
        let content = try Self.content(language)
        #expect(content.subject == subject)
        #expect(content.html.contains(attribute))
    }

    @Test func linkTokensAre128RandomBitsStoredAsHashes() {
        let token = ResponseLinkToken.generate()
        #expect(token.value.utf8.count == 22)
        #expect(ResponseLinkToken(presented: token.value) == token)
        #expect(ResponseLinkToken(presented: token.value + "A") == nil)
        #expect(ResponseLinkToken(presented: String(token.value.dropLast()) + "=") == nil)
        #expect(token.hash.count == 32 && token.hash != ResponseLinkToken.generate().hash)
        #expect("\(token)" == "response link token (redacted)")
    }
}
