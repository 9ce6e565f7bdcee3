import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Postgres
import SurveyDomain
import SurveyStorage
import Testing

/// Issue 13: `POST /erasures` unlinks every request of a customer (by the company's
/// `referenceId`) in one transaction; afterwards no table holds the reference (a pg_dump of
/// the whole database proves it), what was not yet sent is cancelled, and the company's
/// reports give the same numbers as before.
@Suite struct ErasureTests {
    static let reference = "crm-customer-7f3a9e"

    func json(_ response: TestResponse) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]) ?? [:]
    }

    /// The whole database as `pg_dump` writes it (data and schema).
    func dump(_ url: String) throws -> String {
        let bin = try FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")
            .sorted { $0.compare($1, options: .numeric) == .orderedAscending }.last.map { "/usr/lib/postgresql/\($0)/bin/pg_dump" }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(bin))
        process.arguments = ["--no-owner", url]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return String(decoding: data, as: UTF8.self)
    }

    @Test func erasureUnlinksEveryRequestAndKeepsTheReports() async throws {
        try await Pipeline.with("erasure") { pipeline in
            let tenant = try await pipeline.company()
            let (answered, later, other) = (phone(), phone(), phone())
            try await pipeline.api { client in
                let created = try await client.execute(
                    uri: "/survey/1.0.0/surveys", method: .post, headers: tenant.headers,
                    body: ByteBuffer(string: #"{"name":"n","interactionType":"t","questions":[{"body":"0-10?","language":"en"}]}"#))
                let survey = try #require(json(created)["id"] as? Int)
                var idempotent = tenant.headers
                idempotent[HTTPField.Name("Idempotency-Key")!] = "erase-me"
                let sendBody = #"""
                    {"requests":[
                      {"channel":"SMS","destination":"\#(answered)","referenceId":"\#(Self.reference)","segments":["gold"]},
                      {"channel":"SMS","destination":"\#(other)","referenceId":"someone-else","segments":["gold"]}]}
                    """#
                let sent = try await client.execute(
                    uri: "/survey/1.0.0/surveys/\(survey)/send", method: .post, headers: idempotent, body: ByteBuffer(string: sendBody))
                #expect(sent.status == .accepted)
                let scheduled = try await client.execute(
                    uri: "/survey/1.0.0/surveys/\(survey)/send", method: .post, headers: tenant.headers,
                    body: ByteBuffer(
                        string: #"{"requests":[{"channel":"SMS","destination":"\#(later)","referenceId":"\#(Self.reference)","sendAt":"\#(Timestamp.format(Date().addingTimeInterval(86_400)))"}]}"#))
                let scheduledID = try #require((json(scheduled)["results"] as? [[String: Any]])?.first?["requestId"] as? Int)
                try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 1 }
                _ = try await pipeline.reply(from: answered, "10", client: client)
                _ = try await pipeline.reply(from: other, "3", client: client)

                let report = { (query: String) async throws -> String in
                    let response = try await client.execute(uri: "/survey/1.0.0/report\(query)", method: .get, headers: tenant.headers)
                    // The numbers, as canonical JSON (the report's times are left out: they are now).
                    var object = json(response)
                    for key in ["date", "from", "to"] { object[key] = nil }
                    return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
                }
                let before = try await report("")
                let beforeBySurvey = try await report("?groupBy=survey")
                #expect(try dump(pipeline.url).contains(Self.reference), "the dump can see it before")

                let erased = try await client.execute(
                    uri: "/survey/1.0.0/erasures", method: .post, headers: tenant.headers,
                    body: ByteBuffer(string: #"{"referenceId":"\#(Self.reference)"}"#))
                #expect(erased.status == .accepted)
                #expect(String(buffer: erased.body) == #"{"requests":2}"#)

                #expect(!(try dump(pipeline.url)).contains(Self.reference), "a table still holds the reference")
                let after = try await report("")
                #expect(after == before, "before: \(before)\nafter: \(after)")
                #expect(try await report("?groupBy=survey") == beforeBySurvey)
                // What was not sent yet never will be.
                let cancelled = json(
                    try await client.execute(uri: "/survey/1.0.0/requests/\(scheduledID)", method: .get, headers: tenant.headers))
                #expect(cancelled["status"] as? String == "cancelled")
                #expect(cancelled["failureReason"] as? String == "erased")
                #expect(cancelled["referenceId"] is NSNull)
                #expect(try await pipeline.jobsLeft() == 0)
                // The other customer keeps everything.
                let kept = try await client.execute(
                    uri: "/survey/1.0.0/requests?referenceId=someone-else", method: .get, headers: tenant.headers)
                #expect(String(buffer: kept.body).contains(#""segments":["gold"]"#))
                // The send's replay is the same answer, without the reference.
                let replay = try await client.execute(
                    uri: "/survey/1.0.0/surveys/\(survey)/send", method: .post, headers: idempotent, body: ByteBuffer(string: sendBody))
                #expect(replay.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
                #expect(String(buffer: replay.body) == String(buffer: sent.body).replacingOccurrences(
                    of: #""referenceId":"\#(Self.reference)""#, with: #""referenceId":null"#))

                let again = try await client.execute(
                    uri: "/survey/1.0.0/erasures", method: .post, headers: tenant.headers,
                    body: ByteBuffer(string: #"{"referenceId":"\#(Self.reference)"}"#))
                #expect(String(buffer: again.body) == #"{"requests":0}"#)
                for bad in [#"{}"#, #"{"referenceId":""}"#, #"{"referenceId":7}"#, #"{"referenceId":"x","destination":"+32470000000"}"#] {
                    let refused = try await client.execute(
                        uri: "/survey/1.0.0/erasures", method: .post, headers: tenant.headers, body: ByteBuffer(string: bad))
                    #expect(refused.status == .badRequest, "\(bad)")
                }
            }
        }
    }

    /// Every item with the reference was skipped: no request holds it, but the stored
    /// answer of the send call did (the first design returned before scrubbing it).
    @Test func aReferenceOnlyInAStoredAnswerIsErasedToo() async throws {
        try await Pipeline.with("erasereplay") { pipeline in
            let tenant = try await pipeline.company()
            let number = phone()
            try await pipeline.api { client in
                let optOut = try await client.execute(
                    uri: "/survey/1.0.0/opt-outs", method: .post, headers: tenant.headers,
                    body: ByteBuffer(string: #"{"destination":"\#(number)"}"#))
                #expect(optOut.status == .noContent)
                _ = try await pipeline.send(to: [phone()], headers: tenant.headers, client: client)
                let survey = try await pipeline.superuser.withConnection { connection in
                    try await connection.query("SELECT min(survey_id) FROM surveys").one().decode(Int.self)
                }
                var headers = tenant.headers
                headers[HTTPField.Name("Idempotency-Key")!] = "skipped-call"
                let body = #"{"requests":[{"channel":"SMS","destination":"\#(number)","referenceId":"ghost-ref-42"}]}"#
                let sent = try await client.execute(
                    uri: "/survey/1.0.0/surveys/\(survey)/send", method: .post, headers: headers, body: ByteBuffer(string: body))
                #expect(String(buffer: sent.body).contains(#""status":"skipped""#))
                let erased = try await client.execute(
                    uri: "/survey/1.0.0/erasures", method: .post, headers: tenant.headers,
                    body: ByteBuffer(string: #"{"referenceId":"ghost-ref-42"}"#))
                #expect(String(buffer: erased.body) == #"{"requests":0}"#)
                #expect(!(try dump(pipeline.url)).contains("ghost-ref-42"))
                let replay = try await client.execute(
                    uri: "/survey/1.0.0/surveys/\(survey)/send", method: .post, headers: headers, body: ByteBuffer(string: body))
                #expect(String(buffer: replay.body).contains(#""referenceId":null"#), "\(String(buffer: replay.body))")
            }
        }
    }

    /// A number the company suppresses after queueing is not sent: the worker looks at the
    /// company's list as it looks at STOP.
    @Test func aNumberSuppressedAfterQueueingIsNotSent() async throws {
        try await Pipeline.with("suppressed") { pipeline in
            let tenant = try await pipeline.company()
            let number = phone()
            try await pipeline.api { client in
                let ids = try await pipeline.send(to: [number], headers: tenant.headers, client: client)
                let added = try await client.execute(
                    uri: "/survey/1.0.0/opt-outs", method: .post, headers: tenant.headers,
                    body: ByteBuffer(string: #"{"destination":"\#(number)"}"#))
                #expect(added.status == .noContent)
                try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }
                let request = try await pipeline.request(ids[0])
                #expect(request.status == "failed" && request.failure == "opted-out")
                #expect(pipeline.gateway.received.isEmpty)
            }
        }
    }
}
