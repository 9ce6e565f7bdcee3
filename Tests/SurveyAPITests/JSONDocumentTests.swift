import Foundation
import SurveyDomain
import TestSupport
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

    /// Random trees, nested up to four deep with empty containers among them, written
    /// through the writer: a standard parser reads back the same structure (commas,
    /// nesting and keys right), member order kept.
    @Test func randomDocumentsParseBackToWhatWasWritten() throws {
        var random = SplitMix64(seed: 20261129)
        func document(depth: Int) -> JSONDocument {
            switch Int.random(in: 0..<(depth < 4 ? 8 : 5), using: &random) {
            case 0: return .null
            case 1: return .bool(Bool.random(using: &random))
            case 2: return .integer(Int64.random(in: -1_000_000...1_000_000, using: &random))
            case 3: return .string(String(repeating: "é\"\n,", count: Int.random(in: 0...2, using: &random)))
            case 4: return .number(Double(Int.random(in: -1000...1000, using: &random)) / 4)
            case 5, 6:
                return .array((0..<Int.random(in: 0...3, using: &random)).map { _ in document(depth: depth + 1) })
            default:
                return .object((0..<Int.random(in: 0...3, using: &random)).map { index in ("k\(index),\"", document(depth: depth + 1)) })
            }
        }
        func plain(_ document: JSONDocument) -> Any {
            switch document {
            case .null: NSNull()
            case .bool(let value): value
            case .integer(let value): Double(value)
            case .number(let value): value
            case .string(let value): value
            case .array(let values): values.map(plain)
            case .object(let members): Dictionary(uniqueKeysWithValues: members.map { ($0.0, plain($0.1)) })
            }
        }
        func same(_ lhs: Any, _ rhs: Any) -> Bool {
            switch (lhs, rhs) {
            case (is NSNull, is NSNull): return true
            case (let a as [Any], let b as [Any]): return a.count == b.count && zip(a, b).allSatisfy(same)
            case (let a as [String: Any], let b as [String: Any]):
                return a.keys.sorted() == b.keys.sorted() && a.keys.allSatisfy { same(a[$0]!, b[$0]!) }
            case (let a as String, let b as String): return a == b
            case (let a as NSNumber, let b as NSNumber): return a.doubleValue == b.doubleValue
            case (let a as Bool, let b as NSNumber): return a == b.boolValue
            case (let a as Double, let b as NSNumber): return a == b.doubleValue
            default: return false
            }
        }
        for _ in 0..<300 {
            let tree = JSONDocument.array([document(depth: 0)])
            let text = tree.serialized()
            let parsed = try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
            #expect(same(plain(tree), parsed), "\(text)")
            if case .array(let items) = tree, case .object(let members)? = items.first {
                // Order kept: the keys appear in the text in the order they were given.
                let positions = members.map { text.range(of: "\"\($0.0.replacingOccurrences(of: "\"", with: "\\\""))\"")?.lowerBound }
                #expect(positions.compactMap { $0 } == positions.compactMap { $0 }.sorted(), "\(text)")
            }
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
