import APITestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import SurveyDomain
import Hummingbird
import Postgres
import SurveyAPI
import SurveyStorage
import TestSupport
import Testing

/// Every class of bad input gets a clear problem+json error naming what is wrong, and
/// nothing is written.
@Suite struct BadInputTests {
    let harness: Harness
    init() async throws { harness = try await Harness() }

    struct Case: Sendable, CustomTestStringConvertible {
        var label: String
        var body: String
        var status: HTTPResponse.Status = .badRequest
        var fields: [String] = []
        var testDescription: String { label }
    }

    static func survey(name: String = #""waffles""#, interactionType: String = #""general""#, questions: String = #"[{"body":"q","language":"en-GB"}]"#) -> String {
        #"{"name":\#(name),"interactionType":\#(interactionType),"questions":\#(questions)}"#
    }

    static let createCases: [Case] = [
        Case(label: "malformed JSON", body: #"{"name": "#),
        Case(label: "not an object", body: #"["waffles"]"#),
        Case(label: "a bare string", body: #""waffles""#),
        Case(label: "empty body", body: ""),
        Case(label: "nested 100,000 deep", body: String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)),
        Case(label: "invalid UTF-8 escape", body: #"{"name":"\udc00"}"#),
        Case(label: "number out of range", body: survey(name: "1e999")),
        Case(label: "duplicate member", body: #"{"name":"a","name":"b","interactionType":"t","questions":[{"body":"q","language":"en"}]}"#),
        Case(label: "trailing comma", body: #"{"name":"a",}"#),
        Case(label: "leading zero", body: #"{"name":01}"#),
        Case(label: "raw control character in a string", body: "{\"name\":\"a\u{01}b\"}"),
        Case(label: "single quotes", body: "{'name':'a'}"),
        Case(label: "missing everything", body: "{}", fields: ["name", "interactionType", "questions"]),
        Case(label: "wrong types", body: #"{"name":5,"interactionType":true,"questions":"q"}"#, fields: ["name", "interactionType", "questions"]),
        Case(label: "null name", body: survey(name: "null"), fields: ["name"]),
        Case(label: "empty name", body: survey(name: #""""#), fields: ["name"]),
        Case(label: "blank name", body: survey(name: #""   ""#), fields: ["name"]),
        Case(label: "name too long", body: survey(name: "\"" + String(repeating: "n", count: 201) + "\""), fields: ["name"]),
        Case(label: "interactionType too long", body: survey(interactionType: "\"" + String(repeating: "t", count: 101) + "\""), fields: ["interactionType"]),
        Case(label: "NUL in name", body: survey(name: #""wa\u0000ffles""#), fields: ["name"]),
        Case(label: "no questions", body: survey(questions: "[]"), fields: ["questions"]),
        Case(
            label: "too many questions",
            body: survey(questions: "[" + (0..<51).map { #"{"body":"q","language":"x-q\#($0)"}"# }.joined(separator: ",") + "]"),
            fields: ["questions"]),
        Case(label: "question not an object", body: survey(questions: #"[{"body":"q","language":"en"}, 3]"#), fields: ["questions[1]"]),
        Case(
            label: "question fields wrong",
            body: survey(questions: #"[{"body":"","language":"english"},{"body":7,"language":null}]"#),
            fields: ["questions[0].body", "questions[0].language", "questions[1].body", "questions[1].language"]),
        Case(
            label: "question body too long",
            body: survey(questions: #"[{"body":"\#(String(repeating: "b", count: 1001))","language":"en"}]"#),
            fields: ["questions[0].body"]),
        Case(
            label: "duplicate language in one body",
            body: survey(questions: #"[{"body":"a","language":"en-GB"},{"body":"b","language":"fr"},{"body":"c","language":"EN-gb"}]"#),
            status: .unprocessableContent, fields: ["questions[2].language"]),
        Case(label: "every field wrong at once", body: #"{"name":"","interactionType":"","questions":[{}]}"#,
             fields: ["name", "interactionType", "questions[0].body", "questions[0].language"]),
    ]

    @Test(arguments: createCases)
    func createSurveyRejects(_ testCase: Case) async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            let response = try await client.send(.post, "\(base)/surveys", headers: tenant.headers, body: testCase.body)
            response.expectProblem(testCase.status)
            #expect(response.errorFields == testCase.fields)
            #expect(response.object["detail"] is String)
        }
        #expect(try await harness.count("surveys", company: tenant.id) == 0)
        #expect(try await harness.count("questions", company: tenant.id) == 0)
    }

    /// A failure inside the transaction, after the survey row was written, leaves nothing:
    /// a test-only trigger makes the second question's insert fail.
    @Test func aFailureMidTransactionLeavesNoPartialWrite() async throws {
        let tenant = try await harness.company()
        try await harness.superuser().withConnection { connection in
            try await connection.simpleQuery(
                """
                CREATE OR REPLACE FUNCTION test_fail_on_marker() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.body LIKE 'fail-here-%' THEN RAISE EXCEPTION 'injected failure'; END IF;
                    RETURN NEW;
                END $$;
                CREATE OR REPLACE TRIGGER test_fail_on_marker BEFORE INSERT ON questions
                    FOR EACH ROW EXECUTE FUNCTION test_fail_on_marker();
                """)
        }
        let body = Self.survey(questions: #"[{"body":"fine","language":"en"},{"body":"fail-here-\#(UUID())","language":"fr"}]"#)
        try await harness.test { client in
            let response = try await client.send(.post, "\(base)/surveys", headers: tenant.headers, body: body)
            response.expectProblem(.internalServerError)
            #expect(!response.text.contains("injected"))
        }
        #expect(try await harness.count("surveys", company: tenant.id) == 0)
        #expect(try await harness.count("questions", company: tenant.id) == 0)
    }

    @Test func addQuestionRejectsBadFields() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            let created = try await client.send(.post, "\(base)/surveys", headers: tenant.headers, body: Self.survey())
            let id = try #require(created.object["id"] as? Int)
            for (body, fields) in [
                (#"{"body":"","language":"nl-BE"}"#, ["body"]),
                (#"{"body":"x"}"#, ["language"]),
                (#"{"body":"x","language":"nl_BE"}"#, ["language"]),
                (#"{"body":["x"],"language":1}"#, ["body", "language"]),
            ] {
                let response = try await client.send(.post, "\(base)/surveys/\(id)/question", headers: tenant.headers, body: body)
                response.expectProblem(.badRequest)
                #expect(response.errorFields == fields, "\(body)")
            }
            try await client.send(.post, "\(base)/surveys/\(id)/question", headers: tenant.headers, body: "nope")
                .expectProblem(.badRequest)
        }
        #expect(try await harness.count("questions", company: tenant.id) == 1)
    }

    @Test func bodiesOverOneMebibyteAreRefusedWith413() async throws {
        let tenant = try await harness.company()
        let huge = Self.survey(name: "\"" + String(repeating: "n", count: 1024 * 1024) + "\"")
        try await harness.test { client in
            try await client.send(.post, "\(base)/surveys", headers: tenant.headers, body: huge).expectProblem(.contentTooLarge)
        }
        #expect(try await harness.count("surveys", company: tenant.id) == 0)
    }

    /// Issue 12: the webhooks' limit is 64 KiB, and their 413 said 1024 KiB.
    @Test func webhookBodiesOverTheirLimitNameIt() async throws {
        var configuration = Harness.configuration()
        configuration.webhooks = .init(
            authToken: "token", accountSID: "AC" + String(repeating: "0", count: 32), publicBaseURL: "http://surveyd.test")
        let router = buildRouter(configuration: configuration, database: harness.database)
        try await Application(router: router).testContract { client in
            let response = try await client.send(
                .post, "/webhooks/twilio/sms", headers: [.contentType: "application/x-www-form-urlencoded"],
                body: "Body=" + String(repeating: "a", count: 64 * 1024))
            response.expectProblem(.contentTooLarge)
            #expect(response.object["detail"] as? String == "The body is larger than 64 KiB.")
        }
    }

    @Test func otherContentTypesAreRefusedWith415() async throws {
        let tenant = try await harness.company()
        var plain = tenant.headers
        plain[.contentType] = "text/plain"
        var jsonWithCharset = tenant.headers
        jsonWithCharset[.contentType] = "application/json; charset=utf-8"
        // Issue 12: no Content-Type at all was read as JSON.
        var none = tenant.headers
        none[.contentType] = nil
        try await harness.test { [plain, jsonWithCharset, none] client in
            try await client.send(.post, "\(base)/surveys", headers: plain, body: Self.survey())
                .expectProblem(.unsupportedMediaType)
            let missing = try await client.send(.post, "\(base)/surveys", headers: none, body: Self.survey())
            missing.expectProblem(.unsupportedMediaType)
            #expect((missing.object["detail"] as? String)?.contains("no Content-Type") == true)
            // A charset parameter is fine.
            #expect(try await client.send(.post, "\(base)/surveys", headers: jsonWithCharset, body: Self.survey()).status == .created)
        }
    }

    @Test func idsMustBePositiveIntegers() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            for id in ["abc", "0", "-3", "1.5", "99999999999999999999999"] {
                for method: HTTPRequest.Method in [.get, .delete] {
                    let response = try await client.send(method, "\(base)/surveys/\(id)", headers: tenant.headers)
                    response.expectProblem(.badRequest)
                    #expect(response.errorFields == ["id"])
                }
                let response = try await client.send(
                    .post, "\(base)/surveys/\(id)/question", headers: tenant.headers, body: #"{"body":"x","language":"en"}"#)
                response.expectProblem(.badRequest)
            }
            try await client.send(.get, "\(base)/surveys/9223372036854775807", headers: tenant.headers).expectProblem(.notFound)
        }
    }

    @Test func unknownRoutesAre404AndWrongMethods405WithAllow() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            for path in ["/", "/nope", "\(base)/nope", "\(base)/surveys/1/questions", "/survey/2.0.0/surveys"] {
                try await client.send(.get, path, headers: tenant.headers).expectProblem(.notFound)
            }
            for (method, path, allow) in [
                (HTTPRequest.Method.put, "\(base)/surveys", "GET, POST"),
                (.delete, "\(base)/surveys", "GET, POST"),
                (.patch, "\(base)/surveys/1", "DELETE, GET"),
                (.post, "\(base)/surveys/1", "DELETE, GET"),
                (.get, "\(base)/surveys/1/question", "POST"),
            ] {
                let response = try await client.send(method, path, headers: tenant.headers)
                response.expectProblem(.methodNotAllowed)
                #expect(response.headers[.allow] == allow)
            }
        }
    }
}

/// When the database is down, clients hear 503 with Retry-After, never a 500 or a hang.
@Suite struct DatabaseUnavailableTests {
    @Test func answers503WithRetryAfter() async throws {
        let unreachable = Database(client: Database.applicationPool(
            url: "postgresql://nobody@/none?host=/nonexistent-surveyd-socket&connect_timeout=1",
            applicationName: "surveyd-serve", maximumConnections: 2, logger: TestDatabase.logger))
        let application = Application(router: buildRouter(configuration: Harness.configuration(), database: unreachable))
        try await application.testContract { client in
            let start = ContinuousClock.now
            let response = try await client.send(
                .get, "\(base)/surveys", headers: [.authorization: "Bearer nps_live_" + String(repeating: "A", count: 43)])
            response.expectProblem(.serviceUnavailable)
            #expect(response.headers[.retryAfter] == "1")
            // Not a hang: well within the request's deadline, with room for a loaded machine
            // (3.1 s once, with the whole suite running beside it).
            #expect(ContinuousClock.now - start < .seconds(6))
        }
    }
}
