import Foundation
import HTTPTypes
import HummingbirdTesting
import SurveyDomain
import Testing

/// The survey management API, held to the API reference's examples field for field.
@Suite struct SurveyAPITests {
    let harness: Harness
    init() async throws { harness = try await Harness() }

    static let waffles = """
        {
            "name":"waffles",
            "interactionType":"general",
            "questions": [
                {
                    "body":"On a scale from 0-10 , how likely are you to recommend our waffles to a friend or colleague?",
                    "language": "en-GB"
                }
            ]
        }
        """

    @Test func seedCreateExample() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            let response = try await client.send(.post, "\(base)/surveys", headers: tenant.headers, body: Self.waffles)
            #expect(response.status == .created)
            #expect(response.headers[.contentType] == "application/json; charset=utf-8")
            let id = try #require(response.object["id"] as? Int)
            let questionID = try #require((response.object["questions"] as? [[String: Any]])?.first?["id"] as? Int)
            // Exactly the reference's response, fields in its order.
            #expect(
                response.text
                    == #"{"id":\#(id),"name":"waffles","interactionType":"general","questions":[{"id":\#(questionID),"body":"On a scale from 0-10 , how likely are you to recommend our waffles to a friend or colleague?","language":"en-GB"}]}"#
            )
        }
    }

    @Test func seedListExampleWithCanonicalLanguages() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            for product in ["waffles", "biscuits"] {
                let created = try await client.send(
                    .post, "\(base)/surveys", headers: tenant.headers,
                    body: #"{"name":"\#(product)","interactionType":"general","questions":[{"body":"How likely … \#(product)?","language":"en-gb"},{"body":"Quelle est la probabilité … \#(product) ?","language":"FR"}]}"#)
                #expect(created.status == .created)
            }
            let list = try await client.send(.get, "\(base)/surveys", headers: tenant.headers)
            #expect(list.status == .ok)
            #expect(list.array.map { $0["name"] as? String } == ["waffles", "biscuits"])
            for survey in list.array {
                #expect(Set(survey.keys) == ["id", "name", "interactionType", "questions"])
                let questions = survey["questions"] as? [[String: Any]] ?? []
                #expect(questions.map { $0["language"] as? String } == ["en-GB", "fr"])
                #expect(questions.allSatisfy { Set($0.keys) == ["id", "body", "language"] })
            }
            #expect(list.headers[HTTPField.Name("Link")!] == nil)
        }
    }

    /// The first question is the fallback language, so order is part of the answer: the
    /// order they were created in, whatever order the languages sort in.
    @Test func questionsComeBackInTheOrderTheyWereCreated() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            let created = try await client.send(
                .post, "\(base)/surveys", headers: tenant.headers,
                body: #"{"name":"order","interactionType":"general","questions":[{"body":"nl","language":"nl-BE"},{"body":"en","language":"en-GB"},{"body":"fr","language":"fr"}]}"#)
            let id = try #require(created.object["id"] as? Int)
            let fetched = try await client.send(.get, "\(base)/surveys/\(id)", headers: tenant.headers)
            let list = try await client.send(.get, "\(base)/surveys", headers: tenant.headers)
            for survey in [created.object, fetched.object, list.array.first ?? [:]] {
                let questions = survey["questions"] as? [[String: Any]] ?? []
                #expect(questions.map { $0["language"] as? String } == ["nl-BE", "en-GB", "fr"])
            }
        }
    }

    @Test func getAndDeleteOneSurvey() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            let created = try await client.send(.post, "\(base)/surveys", headers: tenant.headers, body: Self.waffles)
            let id = try #require(created.object["id"] as? Int)
            let fetched = try await client.send(.get, "\(base)/surveys/\(id)", headers: tenant.headers)
            #expect(fetched.status == .ok)
            #expect(fetched.text == created.text)

            let deleted = try await client.send(.delete, "\(base)/surveys/\(id)", headers: tenant.headers)
            #expect(deleted.status == .noContent)
            #expect(deleted.text.isEmpty)
            try await client.send(.get, "\(base)/surveys/\(id)", headers: tenant.headers).expectProblem(.notFound)
            try await client.send(.delete, "\(base)/surveys/\(id)", headers: tenant.headers).expectProblem(.notFound)
        }
        // Its questions went with it.
        #expect(try await harness.count("surveys", company: tenant.id) == 0)
        #expect(try await harness.count("questions", company: tenant.id) == 0)
    }

    @Test func seedAddQuestionExampleAndOneQuestionPerLanguage() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            let created = try await client.send(.post, "\(base)/surveys", headers: tenant.headers, body: Self.waffles)
            let id = try #require(created.object["id"] as? Int)
            let body = #"{"body":"Hoe was jou ervaring met ons support team? Stuur ons je score tussen 0 en 10 door te antwoorden op dit bericht","language": "nl-BE"}"#
            let added = try await client.send(.post, "\(base)/surveys/\(id)/question", headers: tenant.headers, body: body)
            #expect(added.status == .created)
            let questionID = try #require(added.object["id"] as? Int)
            #expect(
                added.text
                    == #"{"id":\#(questionID),"body":"Hoe was jou ervaring met ons support team? Stuur ons je score tussen 0 en 10 door te antwoorden op dit bericht","language":"nl-BE"}"#
            )
            // The same tag in another case is the same language.
            let duplicate = try await client.send(
                .post, "\(base)/surveys/\(id)/question", headers: tenant.headers, body: #"{"body":"Again","language":"NL-be"}"#)
            duplicate.expectProblem(.conflict)
            #expect(duplicate.errorFields == ["language"])

            let survey = try await client.send(.get, "\(base)/surveys/\(id)", headers: tenant.headers)
            #expect((survey.object["questions"] as? [[String: Any]])?.map { $0["language"] as? String } == ["en-GB", "nl-BE"])

            try await client.send(.post, "\(base)/surveys/999999999/question", headers: tenant.headers, body: body)
                .expectProblem(.notFound)
        }
        #expect(try await harness.count("questions", company: tenant.id) == 2)
    }

    @Test func listIsPaginatedWithALinkHeader() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            var ids: [Int] = []
            for index in 0..<5 {
                let created = try await client.send(
                    .post, "\(base)/surveys", headers: tenant.headers,
                    body: #"{"name":"s\#(index)","interactionType":"t","questions":[{"body":"q","language":"en"}]}"#)
                ids.append(try #require(created.object["id"] as? Int))
            }
            var seen: [Int] = []
            var next: String? = "\(base)/surveys?limit=2"
            var pages = 0
            while let uri = next {
                let page = try await client.send(.get, uri, headers: tenant.headers)
                #expect(page.status == .ok)
                seen += page.array.compactMap { $0["id"] as? Int }
                pages += 1
                next = page.headers[HTTPField.Name("Link")!].flatMap { link in
                    #expect(link.hasSuffix(#">; rel="next""#))
                    return link.split(separator: ">").first.map { String($0.dropFirst()) }
                }
                #expect(pages <= 5)
            }
            #expect(seen == ids)
            #expect(pages == 3)

            for bad in ["limit=0", "limit=1001", "limit=abc", "limit=", "after=abc", "after=-1"] {
                let response = try await client.send(.get, "\(base)/surveys?\(bad)", headers: tenant.headers)
                response.expectProblem(.badRequest)
                #expect(response.errorFields == [String(bad.prefix(while: { $0 != "=" }))])
            }
        }
    }

    @Test func boundaryLengthsAreAccepted() async throws {
        let tenant = try await harness.company()
        let name = String(repeating: "n", count: 200)
        let interactionType = String(repeating: "é", count: 100)
        let body = String(repeating: "b", count: 1000)
        let questions = (0..<50).map { #"{"body":"\#(body)","language":"x-q\#($0)"}"# }.joined(separator: ",")
        try await harness.test { client in
            let response = try await client.send(
                .post, "\(base)/surveys", headers: tenant.headers,
                body: #"{"name":"\#(name)","interactionType":"\#(interactionType)","questions":[\#(questions)]}"#)
            #expect(response.status == .created, "\(response.text.prefix(300))")
            #expect((response.object["questions"] as? [Any])?.count == 50)
            #expect(response.object["interactionType"] as? String == interactionType)
        }
    }
}
