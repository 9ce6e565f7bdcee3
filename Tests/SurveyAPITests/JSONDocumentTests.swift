import Foundation
import SurveyDomain
import Testing

@testable import SurveyAPI

@Suite struct JSONDocumentTests {
    @Test func escapesWhatJSONRequiresAndWhatParsersChokeOn() {
        let text = "q\"b\\n\nr\rt\tnul\u{0}e\u{1F}del\u{7F}c1\u{80}\u{9F}ls\u{2028}ps\u{2029}bom\u{FEFF}ok\u{A0}é€😀"
        #expect(
            JSONDocument.string(text).serialized()
                == #""q\"b\\n\nr\rt\tnul\u0000e\u001fdel\u007fc1\u0080\u009fls\u2028ps\u2029bom\ufeffok\#u{A0}é€😀""#)
    }

    @Test func keepsMemberOrderAndWritesEveryKind() {
        let document = JSONDocument.object([
            ("z", .integer(-9_007_199_254_740_993)), ("a", .array([.null, .bool(true), .bool(false), .number(2), .number(0.25)])),
            ("", .object([])), ("e", .array([])), ("n", .number(.nan)),
        ])
        #expect(document.serialized() == #"{"z":-9007199254740993,"a":[null,true,false,2,0.25],"":{},"e":[],"n":null}"#)
    }

    @Test func anyStringRoundTripsThroughAStandardParser() throws {
        var generator = SystemRandomNumberGenerator()
        let alphabet: [Unicode.Scalar] = (0...0xA0).compactMap(Unicode.Scalar.init) + ["\u{2028}", "\u{2029}", "é", "€", "😀", "\u{FEFF}"]
        for _ in 0..<500 {
            let length = Int.random(in: 0...40, using: &generator)
            var text = String.UnicodeScalarView()
            for _ in 0..<length { text.append(alphabet.randomElement(using: &generator)!) }
            let string = String(text)
            let encoded = JSONDocument.array([.string(string)]).serialized()
            let decoded = try JSONSerialization.jsonObject(with: Data(encoded.utf8)) as? [String]
            #expect(decoded == [string], "\(encoded)")
        }
    }

    /// A page of surveys writes itself without its document tree: the text must be what the
    /// tree would write, escapes, nesting and commas included (empty question lists too).
    @Test func aSurveyPageWrittenDirectlyIsWhatItsDocumentWrites() throws {
        let surveys = [
            SurveyResponse(Survey(
                id: .init(rawValue: 7), name: "Q\"1\u{2028}", interactionType: "support",
                questions: [
                    Question(id: .init(rawValue: 1), body: "How likely…\n0-10?", language: try LanguageTag(parsing: "en-GB")),
                    Question(id: .init(rawValue: 2), body: "Recommanderiez-vous ?", language: try LanguageTag(parsing: "fr")),
                ])),
            SurveyResponse(Survey(id: .init(rawValue: 8), name: "", interactionType: "", questions: [])),
        ]
        for page in [surveys, [], Array(surveys.prefix(1))] {
            var writer = JSONWriter()
            page.write(to: &writer)
            #expect(String(decoding: writer.bytes, as: UTF8.self) == page.json.serialized())
        }
    }
}

@Suite struct BearerTokenTests {
    @Test(arguments: [
        ("Bearer abc", "abc"), ("bearer   abc  ", "abc"), ("BEARER abc", "abc"), ("  Bearer abc", "abc"), ("Bearer a b", "a b"),
        ("Bearer\tabc", "abc"), ("Bearer", nil), ("Bearer ", nil), ("Basic abc", nil), ("Bearerx abc", nil), ("", nil),
        ("Béarer abc", nil), ("Bearer é", "é"),
    ] as [(String, String?)])
    func extractsTheTokenOfTheBearerScheme(header: String, token: String?) {
        #expect(bearerToken(header) == token)
    }
}
