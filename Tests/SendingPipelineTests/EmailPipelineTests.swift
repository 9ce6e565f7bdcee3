import APITestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import MailTestSupport
import MailTransport
import NIOCore
import Postgres
import SurveyDomain
import SurveyStorage
import SurveyWorker
import TestSupport
import Testing

/// Surveys by e-mail end to end: the send call, the worker handing the message to a real
/// SMTP server (aiosmtpd, STARTTLS and AUTH), the message parsed back, its score links
/// followed over HTTP, and what the reports, usage and opt-outs make of it.
@Suite struct EmailPipelineTests {
    static let from = "surveys@nps.example"

    /// An e-mail worker as `surveyd worker` builds one, to `sink`.
    static func emailWorker(_ pipeline: Pipeline, sink: SMTPSink, mailer: SMTPMailer) -> SendWorker {
        SendWorker(
            queue: QueueRepository(database: Database(client: pipeline.workerPool), policy: SendingPolicy()),
            client: pipeline.workerPool,
            sender: EmailSender(mailer: mailer, configuration: .init(from: from, publicBaseURL: Pipeline.publicBaseURL)),
            configuration: Pipeline.fastWorker, logger: pipeline.logger)
    }

    /// A pipeline, a sink and a mailer for `body`, all closed however it ends.
    static func with(_ label: String, _ body: (Pipeline, SMTPSink, SMTPMailer) async throws -> Void) async throws {
        let sink = try await SMTPSink.start()
        let mailer = SMTPMailer(configuration: sink.configuration(), logger: TestDatabase.logger)
        defer { sink.stop() }
        do {
            try await Pipeline.with(label) { pipeline in try await body(pipeline, sink, mailer) }
            await mailer.shutdown()
        } catch {
            await mailer.shutdown()
            throw error
        }
    }

    static func survey(_ client: any TestClientProtocol, headers: HTTPFields) async throws -> Int {
        let created = try await client.execute(
            uri: "/survey/1.0.0/surveys", method: .post, headers: headers,
            body: ByteBuffer(
                string: #"{"name":"Delivery","interactionType":"order","questions":[{"body":"Would you recommend Frites & Co to a friend?","language":"en"},{"body":"Recommanderiez-vous Frites & Co à un ami ?","language":"fr"}]}"#))
        #expect(created.status == .created)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(created.body.readableBytesView)) as? [String: Any])
        return try #require(object["id"] as? Int)
    }

    static func send(
        _ items: [String], survey: Int, headers: HTTPFields, client: any TestClientProtocol
    ) async throws -> (status: HTTPResponse.Status, results: [[String: Any]], body: String) {
        let response = try await client.execute(
            uri: "/survey/1.0.0/surveys/\(survey)/send", method: .post, headers: headers,
            body: ByteBuffer(string: #"{"requests":[\#(items.joined(separator: ","))]}"#))
        let object = try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
        return (response.status, (object?["results"] as? [[String: Any]]) ?? [], String(buffer: response.body))
    }

    static func form(_ body: String) -> (HTTPFields, ByteBuffer) {
        ([.contentType: "application/x-www-form-urlencoded"], ByteBuffer(string: body))
    }

    @Test func anEmailIsSentAnsweredByLinkAndReported() async throws {
        try await Self.with("email_cycle") { pipeline, sink, mailer in
            let tenant = try await pipeline.company()
            try await pipeline.api { client in
                let survey = try await Self.survey(client, headers: tenant.headers)
                let sent = try await Self.send(
                    [#"{"channel":"EMAIL","destination":"Jane.Doe@Bücher.example","language":"fr-BE","segments":["web"]}"#],
                    survey: survey, headers: tenant.headers, client: client)
                #expect(sent.status == .accepted, "\(sent.body)")
                let id = try #require(sent.results.first?["requestId"] as? Int)
                #expect(sent.results.first?["status"] as? String == "queued")

                try await pipeline.run([Self.emailWorker(pipeline, sink: sink, mailer: mailer)]) { try await pipeline.jobsLeft() == 0 }
                let request = try await pipeline.request(id)
                #expect(request.status == "sent" && request.failure == nil && request.segments == nil)
                // The raw address is gone with the job; only its keyed hash remains.
                let dump = try await pipeline.dump()
                #expect(!dump.lowercased().contains("jane.doe"))

                // The message as the relay got it, over TLS and authenticated.
                let messages = try sink.messages()
                try #require(messages.count == 1)
                let mail = messages[0]
                #expect(mail.from == Self.from && mail.to == ["Jane.Doe@xn--bcher-kva.example"])
                #expect(mail.tls && mail.authenticated)
                let message = ParsedMail(mail.data)
                #expect(message.header("Content-Type")?.hasPrefix("multipart/alternative") == true)
                #expect(message.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click")
                #expect(message.header("Content-Language") == "fr-BE")
                #expect(message.text.contains("Recommanderiez-vous Frites & Co à un ami ?"))
                #expect(message.html.contains("Recommanderiez-vous Frites &amp; Co à un ami ?"))
                let links = message.scoreLinks
                #expect(links.map(\.score) == Array(0...10))
                let token = try #require(links.first?.token)
                #expect(Set(links.map(\.token)) == [token] && token.count == 22)
                #expect(message.header("List-Unsubscribe") == "<\(Pipeline.publicBaseURL)/u/\(token)>")

                // A scanner fetching every link records nothing.
                for link in links {
                    let page = try await client.execute(uri: "/r/\(token)/\(link.score)", method: .get)
                    #expect(page.status == .ok)
                    #expect(page.headers[.cacheControl] == "no-store")
                }
                let landing = try await client.execute(uri: "/r/\(token)/8", method: .get)
                let html = String(buffer: landing.body)
                #expect(html.contains(#"value="8" required checked"#) && html.contains("Envoyer ma note"))
                #expect(!html.contains("<script") && !html.contains("src="))
                #expect(try await pipeline.request(id).score == nil)

                // The POST records it; a second choice replaces it.
                let (headers, body) = Self.form("score=8")
                let thanks = try await client.execute(uri: "/r/\(token)", method: .post, headers: headers, body: body)
                #expect(thanks.status == .ok && String(buffer: thanks.body).contains("Merci"))
                #expect(try await pipeline.request(id).score == 8)
                let (_, second) = Self.form("score=3")
                let replaced = try await client.execute(uri: "/r/\(token)", method: .post, headers: headers, body: second)
                #expect(replaced.status == .ok)
                #expect(try await pipeline.request(id).score == 3)
                // Not a score: the page again, nothing changed.
                let (_, bad) = Self.form("score=11")
                let refused = try await client.execute(uri: "/r/\(token)", method: .post, headers: headers, body: bad)
                #expect(refused.status == .badRequest)
                #expect(try await pipeline.request(id).score == 3)
                // The address is free again once answered.
                let busy = try await pipeline.superuser.withConnection { connection in
                    try await connection.query("SELECT count(*)::int FROM open_surveys").one().decode(Int.self)
                }
                #expect(busy == 0)

                // Reports count it under EMAIL, and only there.
                let email = try await client.execute(uri: "/survey/1.0.0/report?channel=EMAIL", method: .get, headers: tenant.headers)
                #expect(String(buffer: email.body).contains(#""nps":{"promoters":0,"detractors":1,"score":-100,"passives":0"#), "\(String(buffer: email.body))")
                let sms = try await client.execute(uri: "/survey/1.0.0/report?channel=SMS", method: .get, headers: tenant.headers)
                #expect(String(buffer: sms.body).contains(#""totalRequests":0"#))
                // Usage counts the e-mail apart from SMS.
                let usage = try await client.execute(uri: "/survey/1.0.0/usage", method: .get, headers: tenant.headers)
                #expect(String(buffer: usage.body).contains(#""messages":0,"segments":0,"emails":1"#))
                #expect(String(buffer: usage.body).contains(#""emailsQueuedToday":1"#))

                // One click out (RFC 8058), then the address, however written, is opted out.
                let (_, oneClick) = Self.form("List-Unsubscribe=One-Click")
                let confirm = try await client.execute(uri: "/u/\(token)", method: .get)
                #expect(confirm.status == .ok && String(buffer: confirm.body).contains("Se désinscrire"))
                #expect(try await pipeline.superuser.withConnection {
                    try await $0.query("SELECT count(*)::int FROM opt_outs").one().decode(Int.self)
                } == 0, "a GET of the way out opts nobody out")
                let out = try await client.execute(uri: "/u/\(token)", method: .post, headers: headers, body: oneClick)
                #expect(out.status == .ok && String(buffer: out.body).contains("Vous êtes désinscrit."))
                let again = try await Self.send(
                    [#"{"channel":"EMAIL","destination":"jane.doe@BÜCHER.example"}"#], survey: survey, headers: tenant.headers,
                    client: client)
                #expect(again.results.first?["status"] as? String == "skipped")
                #expect(again.results.first?["reason"] as? String == "opted-out")
            }
        }
    }

    @Test func linksThatNameNoOpenRequestChangeNothing() async throws {
        try await Self.with("email_links") { pipeline, sink, mailer in
            let tenant = try await pipeline.company()
            try await pipeline.api { client in
                let survey = try await Self.survey(client, headers: tenant.headers)
                let sent = try await Self.send(
                    [#"{"channel":"EMAIL","destination":"late@example.com"}"#], survey: survey, headers: tenant.headers, client: client)
                let id = try #require(sent.results.first?["requestId"] as? Int)
                try await pipeline.run([Self.emailWorker(pipeline, sink: sink, mailer: mailer)]) { try await pipeline.jobsLeft() == 0 }
                let token = try #require(ParsedMail(try sink.messages()[0].data).scoreLinks.first?.token)
                let (headers, body) = Self.form("score=9")

                // Unknown or malformed tokens, and scores out of range: 404 pages.
                for uri in ["/r/AAAAAAAAAAAAAAAAAAAAAA/9", "/r/short/9", "/r/\(token)/11", "/r/\(token)/-1", "/u/AAAAAAAAAAAAAAAAAAAAAA"] {
                    #expect(try await client.execute(uri: uri, method: .get).status == .notFound, "\(uri)")
                }
                #expect(try await client.execute(uri: "/r/AAAAAAAAAAAAAAAAAAAAAA", method: .post, headers: headers, body: body).status == .notFound)

                // Past the response window: 410, and nothing recorded.
                try await pipeline.superuser.withConnection { connection in
                    try await connection.query("UPDATE survey_requests SET respond_by = now() - interval '1 second' WHERE request_id = \(id)")
                }
                #expect(try await client.execute(uri: "/r/\(token)/9", method: .get).status == .gone)
                #expect(try await client.execute(uri: "/r/\(token)", method: .post, headers: headers, body: body).status == .gone)
                #expect(try await pipeline.request(id).score == nil)
                // The way out still works after the window.
                #expect(try await client.execute(uri: "/u/\(token)", method: .get).status == .ok)
            }
        }
    }

    @Test func relayRefusalsAndLostAnswersAreNeverSentTwice() async throws {
        try await Self.with("email_failures") { pipeline, sink, mailer in
            let tenant = try await pipeline.company()
            try await pipeline.api { client in
                let survey = try await Self.survey(client, headers: tenant.headers)
                let sent = try await Self.send(
                    [
                        #"{"channel":"EMAIL","destination":"reject@example.com"}"#,
                        #"{"channel":"EMAIL","destination":"later@example.com"}"#,
                        #"{"channel":"EMAIL","destination":"drop@example.com"}"#,
                        #"{"channel":"EMAIL","destination":"fine@example.com"}"#,
                    ], survey: survey, headers: tenant.headers, client: client)
                let ids = sent.results.compactMap { $0["requestId"] as? Int }
                try #require(ids.count == 4)
                try await pipeline.run([Self.emailWorker(pipeline, sink: sink, mailer: mailer)], timeout: .seconds(30)) {
                    try await pipeline.jobsLeft() == 0
                }
                #expect(try await pipeline.request(ids[0]).failure == "permanent")
                #expect(try await pipeline.request(ids[1]).failure == "retries-exhausted")
                #expect(try await pipeline.request(ids[2]).failure == "uncertain")
                #expect(try await pipeline.request(ids[3]).status == "sent")
                // The relay took the dropped one and the good one, each exactly once.
                let delivered = try sink.messages().flatMap(\.to).sorted()
                #expect(delivered == ["drop@example.com", "fine@example.com"])
            }
        }
    }

    @Test func badDestinationsAreRefusedByFieldAndEachChannelHasItsCap() async throws {
        try await Self.with("email_bad_input") { pipeline, _, _ in
            let tenant = try await pipeline.company()
            try await pipeline.api { client in
                let survey = try await Self.survey(client, headers: tenant.headers)
                let refused = try await Self.send(
                    [
                        #"{"channel":"EMAIL","destination":"ok@example.com"}"#,
                        #"{"channel":"EMAIL","destination":"+32472306705"}"#,
                        #"{"channel":"EMAIL","destination":"two@@example.com"}"#,
                        #"{"channel":"EMAIL","destination":"\#(String(repeating: "a", count: 65))@example.com"}"#,
                        #"{"channel":"SMS","destination":"jane@example.com"}"#,
                        #"{"channel":"EMAIL","destination":"jane@[192.0.2.1]"}"#,
                    ], survey: survey, headers: tenant.headers, client: client)
                #expect(refused.status == .badRequest)
                for index in 1...5 { #expect(refused.body.contains(#""field":"requests[\#(index)].destination""#), "\(index)") }
                #expect(!refused.body.contains("requests[0]"))
                #expect(try await pipeline.jobsLeft() == 0)
                // The cap of e-mails is apart from the SMS one.
                try await pipeline.superuser.withConnection { connection in
                    try await connection.query("UPDATE companies SET daily_email_cap = 1 WHERE company_id = \(tenant.id)")
                }
                let capped = try await Self.send(
                    [#"{"channel":"EMAIL","destination":"a@example.com"}"#, #"{"channel":"EMAIL","destination":"b@example.com"}"#],
                    survey: survey, headers: tenant.headers, client: client)
                #expect(capped.status == .tooManyRequests && capped.body.contains("/problems/daily-email-cap"))
                #expect(try await pipeline.jobsLeft() == 0)
                let sms = try await Self.send(
                    [#"{"channel":"SMS","destination":"+32472306705"}"#, #"{"channel":"EMAIL","destination":"a@example.com"}"#],
                    survey: survey, headers: tenant.headers, client: client)
                #expect(sms.status == .accepted)
                // A cap lowered below today's count stops its own channel only.
                try await pipeline.superuser.withConnection { connection in
                    try await connection.query(
                        "UPDATE companies SET daily_sms_cap = 0, daily_email_cap = 100 WHERE company_id = \(tenant.id)")
                }
                let stillMail = try await Self.send(
                    [#"{"channel":"EMAIL","destination":"c@example.com"}"#], survey: survey, headers: tenant.headers, client: client)
                #expect(stillMail.status == .accepted, "\(stillMail.body)")
                let noSMS = try await Self.send(
                    [#"{"channel":"SMS","destination":"+32472306798"}"#], survey: survey, headers: tenant.headers, client: client)
                #expect(noSMS.status == .tooManyRequests && noSMS.body.contains("/problems/daily-sms-cap"))
                // And calls have theirs; a call goes to a phone number only.
                try await pipeline.superuser.withConnection { connection in
                    try await connection.query("UPDATE companies SET daily_voice_cap = 0 WHERE company_id = \(tenant.id)")
                }
                let call = try await Self.send(
                    [#"{"channel":"VOICE","destination":"+32472306799"}"#], survey: survey, headers: tenant.headers, client: client)
                #expect(call.status == .tooManyRequests && call.body.contains("/problems/daily-voice-cap"), "\(call.body)")
                let misdirected = try await Self.send(
                    [#"{"channel":"VOICE","destination":"jane@example.com"}"#], survey: survey, headers: tenant.headers, client: client)
                #expect(misdirected.status == .badRequest && misdirected.body.contains(#""field":"requests[0].destination""#))
            }
        }
    }
}

/// A message as the relay received it, read back: its headers, its quoted-printable parts
/// decoded, and the score links of its text.
struct ParsedMail {
    var headers: [(String, String)] = []
    var text = ""
    var html = ""

    init(_ data: String) {
        let normalised = data.replacingOccurrences(of: "\r\n", with: "\n")
        let (head, _) = Self.split(normalised)
        // Unfold continuation lines.
        for line in head.replacingOccurrences(of: "\n ", with: " ").split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        for part in normalised.components(separatedBy: "\n--").dropFirst() {
            let (partHead, partBody) = Self.split(part)
            let decoded = Self.quotedPrintable(partBody)
            if partHead.contains("text/plain") { text = decoded } else if partHead.contains("text/html") { html = decoded }
        }
    }

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    /// `(score, token)` of each `/r/{token}/{score}` link in the text part, in order.
    var scoreLinks: [(score: Int, token: String)] {
        text.split(separator: "\n").compactMap { line in
            guard let range = line.range(of: Pipeline.publicBaseURL + "/r/") else { return nil }
            let parts = line[range.upperBound...].split(separator: "/")
            guard parts.count == 2, let score = Int(parts[1].trimmingCharacters(in: .whitespaces)) else { return nil }
            return (score, String(parts[0]))
        }
    }

    private static func split(_ text: String) -> (String, String) {
        guard let blank = text.range(of: "\n\n") else { return (text, "") }
        return (String(text[..<blank.lowerBound]), String(text[blank.upperBound...]))
    }

    private static func quotedPrintable(_ text: String) -> String {
        let joined = text.replacingOccurrences(of: "=\n", with: "")
        var bytes: [UInt8] = []
        var iterator = Array(joined.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "="), let high = iterator.next(), let low = iterator.next(),
                let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
            {
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
