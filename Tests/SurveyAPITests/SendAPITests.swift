import Foundation
import HTTPTypes
import HummingbirdTesting
import Postgres
import SurveyDomain
import SurveyStorage
import Testing

/// `POST /surveys/{id}/send`: validation, the per-item rules, idempotency, and what lands
/// in the database.
@Suite struct SendAPITests {
    let harness: Harness
    init() async throws { harness = try await Harness() }

    /// A random Belgian mobile number, so tests never collide on the shared sender rules.
    static func phone() -> String { "+3247\(UInt32.random(in: 1_000_000...9_999_999))" }

    static let languages = ["en-GB", "fr", "nl-BE"]

    func item(_ destination: String, reference: String? = nil, language: String? = nil, segments: [String]? = nil) -> String {
        var fields = [#""channel":"SMS""#, #""destination":"\#(destination)""#]
        if let reference { fields.append(#""referenceId":"\#(reference)""#) }
        if let language { fields.append(#""language":"\#(language)""#) }
        if let segments { fields.append(#""segments":[\#(segments.map { "\"\($0)\"" }.joined(separator: ","))]"#) }
        return "{" + fields.joined(separator: ",") + "}"
    }

    func body(_ items: [String]) -> String { #"{"requests":[\#(items.joined(separator: ","))]}"# }

    func results(_ response: TestResponse) -> [[String: Any]] {
        response.object["results"] as? [[String: Any]] ?? []
    }

    @Test func seedExampleIsQueuedWithItsJob() async throws {
        let tenant = try await harness.company()
        let phone = Self.phone()
        try await harness.test { client in
            let survey = try await client.createSurvey(for: tenant, languages: Self.languages)
            let response = try await client.send(
                .post, "\(base)/surveys/\(survey)/send", headers: tenant.headers,
                body: #"""
                    {"requests": [{"channel": "SMS", "segments": ["male", "customer"], "destination": "\#(phone)",
                                   "referenceId": "my-customer-reference", "language": "en-GB"}]}
                    """#)
            #expect(response.status == .accepted, "\(response.text)")
            let result = try #require(results(response).first)
            #expect(result["status"] as? String == "queued")
            #expect(result["referenceId"] as? String == "my-customer-reference")
            let requestID = try #require(result["requestId"] as? Int)
            #expect(response.text == #"{"results":[{"referenceId":"my-customer-reference","requestId":\#(requestID),"status":"queued"}]}"#)

            let row = try await harness.superuser().withConnection { connection in
                try await connection.query(
                    """
                    SELECT r.status, r.segments, q.language, j.destination, j.body, r.destination_hash
                      FROM survey_requests r
                      JOIN questions q ON q.company_id = r.company_id AND q.question_id = r.question_id
                      JOIN sms_jobs j ON j.company_id = r.company_id AND j.request_id = r.request_id
                     WHERE r.company_id = \(tenant.id) AND r.request_id = \(requestID)
                    """
                ).one()
            }
            let (status, segments, language, destination, smsBody, hash) = try row.decode((String, [String], String, String, String, Data).self)
            #expect(status == "queued")
            #expect(segments == ["male", "customer"])
            #expect(language == "en-GB")
            #expect(destination == phone)
            #expect(smsBody == "Question in en-GB?")
            #expect(hash == Harness.hasher.hash(PhoneNumber(e164: phone)!))
        }
    }

    @Test func languageFallsBackToPrimaryThenFirstQuestion() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            let survey = try await client.createSurvey(for: tenant, languages: ["nl-BE", "fr-BE", "en"])
            let cases: [(String?, String)] = [("fr", "fr-BE"), ("en-US", "en"), ("de", "nl-BE"), (nil, "nl-BE"), ("FR-be", "fr-BE")]
            let response = try await client.send(
                .post, "\(base)/surveys/\(survey)/send", headers: tenant.headers,
                body: body(cases.map { item(Self.phone(), language: $0.0) }))
            let ids = results(response).compactMap { $0["requestId"] as? Int }
            #expect(ids.count == cases.count)
            for (id, expected) in zip(ids, cases.map(\.1)) {
                let language = try await harness.superuser().withConnection { connection in
                    try await connection.query(
                        """
                        SELECT q.language FROM survey_requests r JOIN questions q
                            ON q.company_id = r.company_id AND q.question_id = r.question_id
                         WHERE r.company_id = \(tenant.id) AND r.request_id = \(id)
                        """
                    ).one().decode(String.self)
                }
                #expect(language == expected)
            }
        }
    }

    @Test func invalidItemsRejectTheWholeCallAndQueueNothing() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            let survey = try await client.createSurvey(for: tenant, languages: Self.languages)
            let items = [
                item(Self.phone()),
                item("0472306705"),
                #"{"channel":"FAX","destination":"\#(Self.phone())"}"#,
                #"{"destination":"\#(Self.phone())"}"#,
                item("+32 472 30 67 05"),
                item(Self.phone(), segments: ["a,b", ""]),
                item(Self.phone(), language: "english"),
                #"{"channel":"SMS","destination":"\#(Self.phone())","referenceId":"\#(String(repeating: "r", count: 129))"}"#,
                #"{"channel":"SMS","destination":"\#(Self.phone())","segments":[\#((0..<21).map { "\"s\($0)\"" }.joined(separator: ","))]}"#,
                "3",
            ]
            let response = try await client.send(.post, "\(base)/surveys/\(survey)/send", headers: tenant.headers, body: body(items))
            response.expectProblem(.badRequest)
            #expect(response.errorFields == [
                "requests[1].destination", "requests[2].channel", "requests[3].channel", "requests[4].destination",
                "requests[5].segments[0]", "requests[5].segments[1]", "requests[6].language", "requests[7].referenceId",
                "requests[8].segments", "requests[9]",
            ])
            for bad in [#"{}"#, #"{"requests":[]}"#, #"{"requests":{}}"#, body((0..<1001).map { _ in item(Self.phone()) })] {
                let response = try await client.send(.post, "\(base)/surveys/\(survey)/send", headers: tenant.headers, body: bad)
                response.expectProblem(.badRequest)
                #expect(response.errorFields == ["requests"])
            }
            try await client.send(.post, "\(base)/surveys/999999999/send", headers: tenant.headers, body: body([item(Self.phone())]))
                .expectProblem(.notFound)
        }
        #expect(try await harness.count("survey_requests", company: tenant.id) == 0)
        #expect(try await harness.count("sms_jobs", company: tenant.id) == 0)
    }

    @Test func skipReasonsInInputOrder() async throws {
        let tenant = try await harness.company()
        let other = try await harness.company()
        let recent = Self.phone()
        let busy = Self.phone()
        let optedOut = Self.phone()
        let fresh = Self.phone()
        try await harness.superuser().withConnection { connection in
            try await connection.query(
                "INSERT INTO opt_outs (destination_hash) VALUES (\(Harness.hasher.hash(PhoneNumber(e164: optedOut)!)))")
        }
        try await harness.test { client in
            let survey = try await client.createSurvey(for: tenant, languages: Self.languages)
            let otherSurvey = try await client.createSurvey(for: other, languages: Self.languages)
            // Surveyed by this company before.
            _ = try await client.send(.post, "\(base)/surveys/\(survey)/send", headers: tenant.headers, body: body([item(recent)]))
            // An open survey from another company.
            _ = try await client.send(.post, "\(base)/surveys/\(otherSurvey)/send", headers: other.headers, body: body([item(busy)]))

            let response = try await client.send(
                .post, "\(base)/surveys/\(survey)/send", headers: tenant.headers,
                body: body([item(recent, reference: "a"), item(busy, reference: "b"), item(optedOut, reference: "c"),
                            item(fresh, reference: "d"), item(fresh, reference: "e")]))
            #expect(response.status == .accepted)
            let statuses = results(response).map { "\($0["referenceId"] as? String ?? "?"):\($0["status"] as? String ?? "?"):\($0["reason"] as? String ?? "-")" }
            #expect(statuses == [
                "a:skipped:recently-surveyed", "b:skipped:destination-busy", "c:skipped:opted-out", "d:queued:-",
                "e:skipped:destination-busy",
            ])
            #expect(results(response).first?["requestId"] == nil)
        }
    }

    @Test func resurveyDaysZeroAllowsSurveyingAgainOnceTheSurveyIsClosed() async throws {
        let tenant = try await harness.company()
        let phone = Self.phone()
        try await harness.superuser().withConnection { connection in
            try await connection.query("UPDATE companies SET resurvey_days = 0 WHERE company_id = \(tenant.id)")
        }
        try await harness.test { client in
            let survey = try await client.createSurvey(for: tenant, languages: Self.languages)
            let first = try await client.send(.post, "\(base)/surveys/\(survey)/send", headers: tenant.headers, body: body([item(phone)]))
            #expect(results(first).first?["status"] as? String == "queued")
            // Still open: busy, not recently surveyed.
            let second = try await client.send(.post, "\(base)/surveys/\(survey)/send", headers: tenant.headers, body: body([item(phone)]))
            #expect(results(second).first?["reason"] as? String == "destination-busy")
            // Once its slot has expired, the number is free again.
            try await harness.superuser().withConnection { connection in
                try await connection.query(
                    "UPDATE open_surveys SET expires_at = now() - interval '1 second' WHERE destination_hash = \(Harness.hasher.hash(PhoneNumber(e164: phone)!))")
            }
            let third = try await client.send(.post, "\(base)/surveys/\(survey)/send", headers: tenant.headers, body: body([item(phone)]))
            #expect(results(third).first?["status"] as? String == "queued")
        }
    }

    @Test func twentyParallelSendsToOneNumberQueueExactlyOne() async throws {
        let tenants = try await withThrowingTaskGroup(of: Tenant.self) { group in
            for _ in 0..<4 { group.addTask { try await harness.company() } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let phone = Self.phone()
        let statuses = try await harness.test { client in
            var surveys: [Int] = []
            for tenant in tenants { surveys.append(try await client.createSurvey(for: tenant, languages: Self.languages)) }
            return try await withThrowingTaskGroup(of: String.self) { group in
                for index in 0..<20 {
                    let tenant = tenants[index % tenants.count]
                    let survey = surveys[index % tenants.count]
                    group.addTask {
                        let response = try await client.send(
                            .post, "\(base)/surveys/\(survey)/send", headers: tenant.headers, body: body([item(phone)]))
                        let result = results(response).first
                        return (result?["status"] as? String ?? "error \(response.status)") + ":" + (result?["reason"] as? String ?? "")
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
        }
        #expect(statuses.filter { $0 == "queued:" }.count == 1, "\(statuses)")
        #expect(statuses.filter { $0.hasPrefix("skipped:") }.count == 19, "\(statuses)")
        let queued = try await harness.superuser().withConnection { connection in
            try await connection.query(
                "SELECT count(*)::int FROM survey_requests WHERE destination_hash = \(Harness.hasher.hash(PhoneNumber(e164: phone)!))"
            ).one().decode(Int.self)
        }
        #expect(queued == 1)
    }

    @Test func idempotencyKeyReplaysRejectsMismatchAndInProgress() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            let survey = try await client.createSurvey(for: tenant, languages: Self.languages)
            var headers = tenant.headers
            headers[HTTPField.Name("Idempotency-Key")!] = "order-4711"
            let payload = body([item(Self.phone(), reference: "x"), item(Self.phone(), reference: "y")])
            let first = try await client.send(.post, "\(base)/surveys/\(survey)/send", headers: headers, body: payload)
            #expect(first.status == .accepted)
            let replay = try await client.send(.post, "\(base)/surveys/\(survey)/send", headers: headers, body: payload)
            #expect(replay.status == .accepted)
            #expect(replay.text == first.text)
            #expect(replay.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
            #expect(try await harness.count("survey_requests", company: tenant.id) == 2)

            let different = try await client.send(
                .post, "\(base)/surveys/\(survey)/send", headers: headers, body: body([item(Self.phone())]))
            different.expectProblem(.unprocessableContent)

            // Another company may use the same key: keys are per company.
            let other = try await harness.company()
            let otherSurvey = try await client.createSurvey(for: other, languages: Self.languages)
            var otherHeaders = other.headers
            otherHeaders[HTTPField.Name("Idempotency-Key")!] = "order-4711"
            let theirs = try await client.send(
                .post, "\(base)/surveys/\(otherSurvey)/send", headers: otherHeaders, body: body([item(Self.phone())]))
            #expect(theirs.status == .accepted)
            #expect(theirs.headers[HTTPField.Name("Idempotent-Replayed")!] == nil)

            // A claim without a response that has not run out (as one committed apart from
            // its work, by earlier versions, could be left): 409.
            let running = "still-running"
            let payload2 = body([item(Self.phone())])
            var fingerprint = Data("\(survey)\n".utf8)
            fingerprint.append(Data(payload2.utf8))
            let claimedFingerprint = Harness.hasher.fingerprint(fingerprint)
            _ = try await harness.database.withTenant(tenant.id) { connection in
                try await IdempotencyRepository().claim(
                    running, requestHash: claimedFingerprint, company: tenant.id, on: connection)
            }
            headers[HTTPField.Name("Idempotency-Key")!] = running
            let conflict = try await client.send(.post, "\(base)/surveys/\(survey)/send", headers: headers, body: payload2)
            conflict.expectProblem(.conflict)

            headers[HTTPField.Name("Idempotency-Key")!] = String(repeating: "k", count: 256)
            let tooLong = try await client.send(.post, "\(base)/surveys/\(survey)/send", headers: headers, body: payload2)
            tooLong.expectProblem(.badRequest)
            #expect(tooLong.errorFields == ["Idempotency-Key"])
        }
        #expect(try await harness.count("survey_requests", company: tenant.id) == 2)
    }
}
