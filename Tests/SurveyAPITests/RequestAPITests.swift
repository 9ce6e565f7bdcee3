import Foundation
import HTTPTypes
import HummingbirdTesting
import Postgres
import SurveyDomain
import SurveyStorage
import Testing

/// `GET /requests/{id}`, `GET /requests` (JSON pages, CSV and NDJSON exports) and
/// `DELETE /requests/{id}`.
@Suite struct RequestAPITests {
    let harness: Harness
    init() async throws { harness = try await Harness() }

    /// Sends one request per item and returns their ids, in input order (ids are drawn in
    /// the order of the numbers' hashes, so not increasing along the items).
    func send(
        _ client: any TestClientProtocol, tenant: Tenant, survey: Int, items: [(reference: String?, segments: [String])],
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> [Int] {
        let body = items.map { item in
            var fields = [#""channel":"SMS""#, #""destination":"\#(SendAPITests.phone())""#]
            if let reference = item.reference {
                fields.append(#""referenceId":\#(String(decoding: try! JSONEncoder().encode(reference), as: UTF8.self))"#)
            }
            fields.append(#""segments":[\#(item.segments.map { "\"\($0)\"" }.joined(separator: ","))]"#)
            return "{" + fields.joined(separator: ",") + "}"
        }.joined(separator: ",")
        let response = try await client.send(
            .post, "\(base)/surveys/\(survey)/send", headers: tenant.headers, body: #"{"requests":[\#(body)]}"#)
        #expect(response.status == .accepted, "\(response.text)", sourceLocation: sourceLocation)
        let results = response.object["results"] as? [[String: Any]] ?? []
        return try results.map { try #require($0["requestId"] as? Int, sourceLocation: sourceLocation) }
    }

    /// Runs SQL as the superuser (the worker's and the webhooks' effects, without them).
    func execute(_ query: PostgresQuery) async throws {
        try await harness.superuser().withConnection { try await $0.query(query) }
    }

    @Test func oneRequestShowsItsFieldsAndNeverItsDestination() async throws {
        let tenant = try await harness.company()
        let phone = SendAPITests.phone()
        try await harness.test { client in
            let survey = try await client.createSurvey(for: tenant, languages: ["en-GB"])
            let sent = try await client.send(
                .post, "\(base)/surveys/\(survey)/send", headers: tenant.headers,
                body: #"{"requests":[{"channel":"SMS","destination":"\#(phone)","referenceId":"crm-1","language":"en-GB","segments":["gold","north"]}]}"#)
            let id = try #require((sent.object["results"] as? [[String: Any]])?.first?["requestId"] as? Int)

            let response = try await client.send(.get, "\(base)/requests/\(id)", headers: tenant.headers)
            #expect(response.status == .ok, "\(response.text)")
            let object = response.object
            #expect(object["id"] as? Int == id)
            #expect(object["surveyId"] as? Int == survey)
            #expect(object["referenceId"] as? String == "crm-1")
            #expect(object["channel"] as? String == "SMS")
            #expect(object["language"] as? String == "en-GB")
            #expect(object["segments"] as? [String] == ["gold", "north"])
            #expect(object["status"] as? String == "queued")
            #expect(object["failureReason"] is NSNull && object["score"] is NSNull && object["category"] is NSNull)
            #expect(object["badResponses"] as? Int == 0)
            #expect((object["createdAt"] as? String)?.hasSuffix("+00:00") == true)
            #expect(object["sentAt"] is NSNull && object["respondBy"] is NSNull)
            // The fields in the documented order.
            #expect(response.text.hasPrefix(#"{"id":\#(id),"surveyId":\#(survey),"referenceId":"crm-1","channel":"SMS","language":"en-GB","segments":["gold","north"],"status":"queued","failureReason":null,"score":null,"category":null,"badResponses":0,"createdAt":""#))
            // Not the number, not its digits, not its hash.
            let hash = Harness.hasher.hash(try #require(PhoneNumber(e164: phone))).map { String(format: "%02x", $0) }.joined()
            #expect(!response.text.contains(phone.dropFirst(3)) && !response.text.contains(hash))
            #expect(!response.text.contains("destination"))

            // Dates in the time zone asked for.
            let brussels = try await client.send(.get, "\(base)/requests/\(id)?timezone=Europe/Brussels", headers: tenant.headers)
            #expect((brussels.object["createdAt"] as? String)?.hasSuffix("+01:00") == true, "\(brussels.text)")
        }
    }

    @Test func statusFollowsTheRequestsLife() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            let survey = try await client.createSurvey(for: tenant)
            let ids = try await send(client, tenant: tenant, survey: survey, items: Array(repeating: (nil, []), count: 7))
            let company = tenant.id
            // What the worker, the callbacks and the replies would have written.
            try await execute(
                """
                UPDATE survey_requests SET status = 'sent', sent_at = now(), respond_by = now() + interval '72 hours'
                 WHERE company_id = \(company) AND request_id = ANY(\([ids[1], ids[2], ids[3], ids[4]])::bigint[])
                """)
            try await execute(
                "UPDATE survey_requests SET status = 'delivered', delivered_at = now() WHERE company_id = \(company) AND request_id = \(ids[2])")
            try await execute(
                "UPDATE survey_requests SET score = 6, responded_at = now() WHERE company_id = \(company) AND request_id = \(ids[3])")
            try await execute(
                "UPDATE survey_requests SET respond_by = now() - interval '1 second', bad_replies = 2 WHERE company_id = \(company) AND request_id = \(ids[4])")
            try await execute(
                "UPDATE survey_requests SET status = 'failed', failure = 'permanent', failed_at = now() WHERE company_id = \(company) AND request_id = \(ids[5])")
            try await execute(
                "UPDATE survey_requests SET scheduled_for = now() + interval '1 day' WHERE company_id = \(company) AND request_id = \(ids[6])")

            let expected: [(String, String?, String?)] = [
                ("queued", nil, nil), ("sent", nil, nil), ("delivered", nil, nil), ("responded", nil, "detractor"),
                ("expired", nil, nil), ("failed", "permanent", nil), ("scheduled", nil, nil),
            ]
            for (id, (status, reason, category)) in zip(ids, expected) {
                let object = try await client.send(.get, "\(base)/requests/\(id)", headers: tenant.headers).object
                #expect(object["status"] as? String == status, "request \(id)")
                #expect(object["failureReason"] as? String == reason, "request \(id)")
                #expect(object["category"] as? String == category, "request \(id)")
            }
            // Each status filters the list to exactly its requests.
            for (id, (status, _, _)) in zip(ids, expected) {
                let page = try await client.send(.get, "\(base)/requests?status=\(status)", headers: tenant.headers)
                #expect(page.array.compactMap { $0["id"] as? Int } == [id], "status=\(status): \(page.text)")
            }
        }
    }

    @Test func categoriesFollowTheNPSBands() {
        #expect((0...6).allSatisfy { ScoreCategory(score: $0) == .detractor })
        #expect((7...8).allSatisfy { ScoreCategory(score: $0) == .passive })
        #expect((9...10).allSatisfy { ScoreCategory(score: $0) == .promoter })
    }

    @Test func anotherCompanysRequestIsNotFound() async throws {
        let owner = try await harness.company()
        let other = try await harness.company()
        try await harness.test { client in
            let survey = try await client.createSurvey(for: owner)
            let id = try #require(try await send(client, tenant: owner, survey: survey, items: [("mine", [])]).first)
            try await client.send(.get, "\(base)/requests/\(id)", headers: other.headers).expectProblem(.notFound)
            try await client.send(.delete, "\(base)/requests/\(id)", headers: other.headers).expectProblem(.notFound)
            let list = try await client.send(.get, "\(base)/requests?referenceId=mine", headers: other.headers)
            #expect(list.status == .ok && list.array.isEmpty, "\(list.text)")
            // Still queued for its owner.
            let mine = try await client.send(.get, "\(base)/requests/\(id)", headers: owner.headers)
            #expect(mine.object["status"] as? String == "queued")
        }
    }

    @Test func listFiltersAndPages() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            let first = try await client.createSurvey(for: tenant)
            let second = try await client.createSurvey(for: tenant)
            let a = try await send(client, tenant: tenant, survey: first, items: [("r-1", ["gold"]), ("r-2", ["gold", "north"]), ("r-3", [])])
            let b = try await send(client, tenant: tenant, survey: second, items: [("r-4", ["north"]), ("r-1", ["south"])])
            func ids(_ query: String) async throws -> [Int] {
                let response = try await client.send(.get, "\(base)/requests\(query)", headers: tenant.headers)
                #expect(response.status == .ok, "\(query): \(response.text)")
                return response.array.compactMap { $0["id"] as? Int }
            }
            let all = (a + b).sorted()
            #expect(try await ids("") == all.reversed(), "newest first by default")
            #expect(try await ids("?order=oldest") == all)
            #expect(try await ids("?surveyId=\(first)&order=oldest") == a.sorted())
            #expect(try await ids("?referenceId=r-1&order=oldest") == [a[0], b[1]].sorted())
            #expect(try await ids("?segments=gold&order=oldest") == [a[0], a[1]].sorted())
            #expect(try await ids("?segments=gold,north&order=oldest") == [a[1]])
            #expect(try await ids("?segments=gold&segments=north&segmentMode=ANY&order=oldest") == [a[0], a[1], b[0]].sorted())
            #expect(try await ids("?channel=SMS&order=oldest") == all)
            #expect(try await ids("?endDate=2020-01-01&startDate=2019-01-01").isEmpty)

            // Pages of two, following the Link header with the query kept.
            var seen: [Int] = []
            var next: String? = "\(base)/requests?order=oldest&limit=2"
            while let uri = next {
                let page = try await client.send(.get, uri, headers: tenant.headers)
                seen += page.array.compactMap { $0["id"] as? Int }
                next = page.headers[.init("Link")!].flatMap { link in
                    link.split(separator: ">").first.map { String($0.dropFirst()) }
                }
                if let next { #expect(next.contains("order=oldest") && next.contains("limit=2"), "\(next)") }
                #expect(seen.count <= all.count)
            }
            #expect(seen == all)
        }
    }

    @Test func badListParametersAreEachNamed() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            let response = try await client.send(
                .get, "\(base)/requests?surveyId=x&status=lost&limit=0&after=-1&order=up&format=xml&referenceid=a&timezone=CET",
                headers: tenant.headers)
            response.expectProblem(.badRequest)
            #expect(Set(response.errorFields) == ["surveyId", "status", "limit", "after", "order", "format", "referenceid", "timezone"], "\(response.text)")
            let repeated = try await client.send(.get, "\(base)/requests?status=sent&status=failed", headers: tenant.headers)
            repeated.expectProblem(.badRequest)
            #expect(repeated.errorFields == ["status"])
            let export = try await client.send(.get, "\(base)/requests?format=csv&limit=10", headers: tenant.headers)
            export.expectProblem(.unprocessableContent)
            #expect(export.errorFields == ["limit"])
            let reversed = try await client.send(.get, "\(base)/requests?startDate=2026-02-01&endDate=2026-01-01", headers: tenant.headers)
            reversed.expectProblem(.unprocessableContent)
            let notAcceptable = try await client.send(.get, "\(base)/requests", headers: tenant.headers.merging([.accept: "application/xml"]))
            notAcceptable.expectProblem(.notAcceptable)
            // `q=0` refuses a type: the next one is chosen.
            let notCSV = try await client.send(
                .get, "\(base)/requests", headers: tenant.headers.merging([.accept: "text/csv;q=0, application/json"]))
            #expect(notCSV.status == .ok && notCSV.headers[.contentType] == "application/json; charset=utf-8")
            try await client.send(.get, "\(base)/requests/abc", headers: tenant.headers).expectProblem(.badRequest)
            try await client.send(.get, "\(base)/requests/1?zone=UTC", headers: tenant.headers).expectProblem(.badRequest)
        }
    }

    @Test func csvExportIsRFC4180AndDefusesFormulas() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            let survey = try await client.createSurvey(for: tenant)
            let references = ["=HYPERLINK(\"http://evil\")", "+1", "-2", "@SUM(A1)", "\tx", "plain, with \"quotes\"", "ok"]
            let ids = try await send(client, tenant: tenant, survey: survey, items: references.map { ($0, ["a;b", "c"]) })
            // `\r` cannot travel in a referenceId's JSON as sent above; write one directly.
            try await execute("UPDATE survey_requests SET reference_id = E'\\rcr' WHERE company_id = \(tenant.id) AND request_id = \(ids[6])")

            let response = try await client.send(
                .get, "\(base)/requests?order=oldest", headers: tenant.headers.merging([.accept: "text/csv"]))
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "text/csv; charset=utf-8; header=present")
            let lines = response.text.components(separatedBy: "\r\n")
            #expect(lines.first == "id,surveyId,referenceId,channel,language,segments,status,failureReason,score,category,badResponses,createdAt,scheduledFor,sentAt,deliveredAt,respondedAt,respondBy")
            #expect(lines.count == ids.count + 2 && lines.last == "", "one row per request, each ended by CRLF")
            let cells = lines.dropFirst().dropLast().map { line in
                // The reference is the third cell; every row's first two are numbers.
                line.split(separator: ",", maxSplits: 2).map(String.init)
            }
            let expected = [
                #""'=HYPERLINK(""http://evil"")""#, #""'+1""#, #""'-2""#, #""'@SUM(A1)""#, "\"'\tx\"",
                #""plain, with ""quotes""""#, "\"'\rcr\"",
            ]
            #expect(cells.map { Int($0[0]) } == ids.sorted(), "oldest first")
            for row in cells {
                let index = try #require(ids.firstIndex(of: Int(row[0]) ?? 0))
                // Segments joined by `;`, so quoted (a `;` is a list separator in some locales).
                #expect(row[2].hasPrefix(expected[index] + #",SMS,,"a;b;c",queued,,,,0,"#), "row of \(references[index].debugDescription): \(row[2])")
            }
            // `format=csv` is the same as asking with Accept.
            let byParameter = try await client.send(.get, "\(base)/requests?order=oldest&format=csv", headers: tenant.headers)
            #expect(byParameter.text == response.text)
        }
    }

    @Test func ndjsonExportIsOneRequestPerLine() async throws {
        let tenant = try await harness.company()
        try await harness.test { client in
            let survey = try await client.createSurvey(for: tenant)
            let ids = try await send(client, tenant: tenant, survey: survey, items: [("n-1", ["x"]), ("n-2", [])])
            let response = try await client.send(.get, "\(base)/requests", headers: tenant.headers.merging([.accept: "application/x-ndjson"]))
            #expect(response.headers[.contentType] == "application/x-ndjson")
            let lines = response.text.split(separator: "\n", omittingEmptySubsequences: false)
            #expect(lines.count == 3 && lines.last == "")
            let objects = lines.dropLast().compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            #expect(objects.compactMap { $0["id"] as? Int } == ids.sorted().reversed())
            let page = try await client.send(.get, "\(base)/requests", headers: tenant.headers)
            #expect(lines.dropLast().joined(separator: ",") == page.text.dropFirst().dropLast(), "the same objects as the JSON list")
        }
    }

    /// More rows than one statement reads: every one exactly once, in order, with the
    /// period's bounds honoured.
    @Test func exportStreamsEveryChunk() async throws {
        let tenant = try await harness.company()
        let count = RequestRepository.exportChunk * 2 + 7
        try await harness.test { client in
            let survey = try await client.createSurvey(for: tenant)
            let question = try await harness.superuser().withConnection { connection in
                try await connection.query("SELECT question_id FROM questions WHERE company_id = \(tenant.id) AND survey_id = \(survey)")
                    .one().decode(Int64.self)
            }
            try await execute(
                """
                INSERT INTO survey_requests (company_id, survey_id, question_id, channel, destination_hash, reference_id, created_at)
                SELECT \(tenant.id), \(survey), \(question), 'SMS', sha256(i::text::bytea), 'bulk-' || i, now() - interval '1 hour'
                  FROM generate_series(1, \(count)) AS i
                """)
            let response = try await client.send(.get, "\(base)/requests?format=csv&order=oldest", headers: tenant.headers)
            let rows = response.text.components(separatedBy: "\r\n").dropFirst().dropLast()
            #expect(rows.count == count)
            let references = rows.map { $0.split(separator: ",")[2] }
            #expect(references == (1...count).map { "bulk-\($0)"[...] })
            let ids = rows.compactMap { Int($0.prefix { $0 != "," }) }
            #expect(ids == ids.sorted() && Set(ids).count == count)
            // Resuming an interrupted export after a given id.
            let resumed = try await client.send(.get, "\(base)/requests?format=ndjson&order=oldest&after=\(ids[count - 3])", headers: tenant.headers)
            #expect(resumed.text.split(separator: "\n").count == 2)
        }
    }
}
