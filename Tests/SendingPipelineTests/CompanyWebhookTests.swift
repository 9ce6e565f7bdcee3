import AsyncHTTPClient
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import NIOPosix
import Postgres
import ServiceLifecycle
import Synchronization
import SurveyDomain
import SurveyStorage
import SurveyWorker
import TestSupport
import Testing
import WebhookSender

/// Company webhooks end to end: real replies and callbacks through the API, the worker's
/// dispatcher, and a real local receiver that verifies every delivery with the Standard
/// Webhooks reference library (`standardwebhooks`, PyPI).
@Suite struct CompanyWebhookTests {
    static let allEvents = WebhookEventType.subscribable.map(\.rawValue)

    /// An admin token's headers for `company`.
    static func admin(_ pipeline: Pipeline, _ company: CompanyID) async throws -> HTTPFields {
        let (_, token) = try await CompanyRepository(database: pipeline.database).createToken(company: company, scope: .admin)
        return [.authorization: "Bearer \(token.secret)", .contentType: "application/json"]
    }

    static func json(_ response: TestResponse) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any])
    }

    /// A JSON value as comparable text, whichever parser read it (numbers without a fraction as integers).
    static func text(_ value: Any?) -> String {
        switch value {
        case nil, is NSNull, is WebhookReceiver.JSONNull: return "null"
        case let string as String: return "\"\(string)\""
        case let array as [Any]: return "[" + array.map { text($0) }.joined(separator: ",") + "]"
        case let number as Double where number == number.rounded(): return String(Int64(number))
        case let number as NSNumber: return number.stringValue
        default: return "\(value!)"
        }
    }

    static func jsonArray(_ response: TestResponse) throws -> [[String: Any]] {
        try #require(try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [[String: Any]])
    }

    /// Registers an endpoint at the receiver and gives the receiver its secret.
    static func register(
        _ name: String, events: [String] = allEvents, receiver: WebhookReceiver, headers: HTTPFields, client: any TestClientProtocol,
        behaviour: String = "ok"
    ) async throws -> (id: Int, secret: String) {
        let body = try JSONSerialization.data(withJSONObject: ["url": receiver.url(name), "events": events, "description": "CRM"])
        let created = try await client.execute(uri: "/survey/1.0.0/webhooks", method: .post, headers: headers, body: ByteBuffer(bytes: body))
        #expect(created.status == .created, "\(String(buffer: created.body))")
        let object = try json(created)
        let secret = try #require(object["secret"] as? String)
        try await receiver.configure(name, secrets: [secret], behaviour: behaviour)
        return (try #require(object["id"] as? Int), secret)
    }

    static func withReceiver<Value>(_ pipeline: Pipeline, _ body: (WebhookReceiver) async throws -> Value) async throws -> Value {
        let receiver = try await WebhookReceiver.start(client: pipeline.httpClient)
        defer { receiver.stop() }
        return try await body(receiver)
    }

    /// Runs `services` until `done` holds (or the timeout), then shuts them down.
    static func running(
        _ pipeline: Pipeline, _ services: [any ServiceLifecycle.Service], timeout: Duration = .seconds(20),
        until done: @Sendable () async throws -> Bool
    ) async throws {
        try await pipeline.run([], alongside: services, timeout: timeout, until: done)
    }

    // MARK: Events

    @Test func everyEventArrivesSignedAndVerifiedWithNoPersonalData() async throws {
        try await Pipeline.with("webhook_events") { pipeline in
            try await Self.withReceiver(pipeline) { receiver in
                let tenant = try await pipeline.company()
                let admin = try await Self.admin(pipeline, tenant.id)
                let numbers = [phone(), phone(), phone(), phone()]
                try await pipeline.api { client in
                    _ = try await Self.register("crm", receiver: receiver, headers: admin, client: client)
                    let ids = try await pipeline.send(to: numbers, headers: tenant.headers, client: client)
                    try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }
                    // Scored, bad then STOP, delivered, undelivered.
                    _ = try await pipeline.reply(from: numbers[0], "9", client: client)
                    _ = try await pipeline.reply(from: numbers[1], "very good", client: client)
                    _ = try await pipeline.reply(from: numbers[1], "STOP", client: client)
                    let second = try await pipeline.request(ids[2])
                    _ = try await pipeline.webhook(
                        "/webhooks/twilio/status", [("MessageSid", second.messageID!), ("MessageStatus", "delivered")], client: client)
                    let third = try await pipeline.request(ids[3])
                    _ = try await pipeline.webhook(
                        "/webhooks/twilio/status", [("MessageSid", third.messageID!), ("MessageStatus", "undelivered")], client: client)

                    let dispatcher = pipeline.dispatcher()
                    try await Self.running(pipeline, [dispatcher]) { try await receiver.log("crm").count >= 5 }
                    let log = try await receiver.log("crm")
                    #expect(log.count == 5, "\(log.map(\.type))")
                    #expect(Set(log.compactMap(\.type)) == ["response.received", "response.invalid", "destination.opted_out", "request.delivered", "request.failed"])
                    // Verified by the reference library, with our secret; ids unique, events'.
                    #expect(log.allSatisfy { $0.verified == [true] && $0.signatures == 1 })
                    #expect(Set(log.map(\.id)).count == log.count && log.allSatisfy { $0.id.hasPrefix("evt_") })
                    #expect(log.allSatisfy { $0.userAgent?.hasPrefix("surveyd-webhooks") == true })
                    // No number, hash of one, or reply text leaves.
                    let hashes = numbers.map { Pipeline.hasher.hash(PhoneNumber(e164: $0)!).map { String(format: "%02x", $0) }.joined() }
                    for delivery in log {
                        for number in numbers { #expect(!delivery.bodyText.contains(number.dropFirst())) }
                        for hash in hashes { #expect(!delivery.bodyText.contains(hash)) }
                        #expect(!delivery.bodyText.lowercased().contains("very good"))
                    }
                    // The request in an event is the request as the API shows it.
                    let received = try #require(log.first { $0.type == "response.received" })
                    #expect(received.request["id"] as? Double == Double(ids[0]))
                    #expect(received.request["score"] as? Double == 9 && received.request["category"] as? String == "promoter")
                    let shown = try Self.json(
                        try await client.execute(uri: "/survey/1.0.0/requests/\(ids[0])", method: .get, headers: tenant.headers))
                    for key in ["id", "surveyId", "referenceId", "channel", "language", "segments", "status", "failureReason", "score",
                                "category", "badResponses", "createdAt", "scheduledFor", "sentAt", "deliveredAt", "respondedAt", "respondBy"] {
                        #expect(Self.text(received.request[key]) == Self.text(shown[key]), "\(key)")
                    }
                    #expect(Set(received.request.keys) == Set(shown.keys))
                    let failed = try #require(log.first { $0.type == "request.failed" })
                    #expect(failed.request["failureReason"] as? String == "undelivered")
                    let optedOut = try #require(log.first { $0.type == "destination.opted_out" })
                    #expect(optedOut.data["optedOutAt"] is String && optedOut.request["id"] as? Double == Double(ids[1]))
                    // Each delivery is logged as succeeded, with its attempt.
                    let endpoints = try Self.jsonArray(try await client.execute(uri: "/survey/1.0.0/webhooks", method: .get, headers: admin))
                    let endpointID = try #require(endpoints.first?["id"] as? Int)
                    let deliveries = try Self.jsonArray(
                        try await client.execute(uri: "/survey/1.0.0/webhooks/\(endpointID)/deliveries", method: .get, headers: admin))
                    #expect(deliveries.count == 5)
                    #expect(deliveries.allSatisfy { ($0["status"] as? String) == "succeeded" && ($0["attempts"] as? [Any])?.count == 1 })
                }
            }
        }
    }

    @Test func eventsAreWrittenWithTheirChangeAndNeverForOneRolledBack() async throws {
        try await Pipeline.with("webhook_outbox") { pipeline in
            let tenant = try await pipeline.company()
            let admin = try await Self.admin(pipeline, tenant.id)
            let number = phone()
            try await pipeline.api { client in
                let body = #"{"url":"http://127.0.0.1:9/x","events":["request.delivered"]}"#
                #expect(try await client.execute(uri: "/survey/1.0.0/webhooks", method: .post, headers: admin, body: ByteBuffer(string: body)).status == .created)
                let id = try #require(try await pipeline.send(to: [number], headers: tenant.headers, client: client).first)
                try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }
                func events() async throws -> Int {
                    try await pipeline.superuser.withConnection { try await $0.query("SELECT count(*)::int FROM webhook_events").one().decode(Int.self) }
                }
                // The change rolled back: no event.
                try await pipeline.superuser.withConnection { connection in
                    try await connection.simpleQuery(
                        "BEGIN; UPDATE survey_requests SET status = 'delivered', delivered_at = now() WHERE request_id = \(id); ROLLBACK")
                }
                #expect(try await events() == 0)
                // A subscribed event not asked for (response.received) is not written either.
                _ = try await pipeline.reply(from: number, "10", client: client)
                #expect(try await events() == 0)
                // Committed: exactly one event and one delivery.
                let message = try await pipeline.request(id).messageID!
                _ = try await pipeline.webhook("/webhooks/twilio/status", [("MessageSid", message), ("MessageStatus", "delivered")], client: client)
                #expect(try await events() == 1)
                let deliveries = try await pipeline.superuser.withConnection {
                    try await $0.query("SELECT count(*)::int FROM webhook_deliveries WHERE state = 'pending'").one().decode(Int.self)
                }
                #expect(deliveries == 1)
            }
        }
    }

    @Test func expiredWindowsAreAnnouncedOnceAndErasureTakesEventsAlong() async throws {
        try await Pipeline.with("webhook_expiry") { pipeline in
            try await Self.withReceiver(pipeline) { receiver in
                let tenant = try await pipeline.company()
                let admin = try await Self.admin(pipeline, tenant.id)
                let numbers = [phone(), phone()]
                try await pipeline.api { client in
                    _ = try await Self.register("expiry", events: ["request.expired", "response.received"], receiver: receiver, headers: admin, client: client)
                    let ids = try await pipeline.send(to: numbers, headers: tenant.headers, client: client)
                    try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }
                    // Both windows close in a moment: the first unanswered, the second answered.
                    try await pipeline.superuser.withConnection { connection in
                        try await connection.query(
                            "UPDATE survey_requests SET respond_by = now() + interval '500 milliseconds' WHERE request_id = ANY(\(ids)::bigint[])")
                    }
                    _ = try await pipeline.reply(from: numbers[1], "3", client: client)
                    let dispatcher = pipeline.dispatcher()
                    try await Self.running(pipeline, [dispatcher]) { try await receiver.log("expiry").count >= 2 }
                    // Sweeps go on; nothing is announced twice.
                    try await Task.sleep(for: .milliseconds(600))
                    let log = try await receiver.log("expiry")
                    #expect(log.compactMap(\.type).sorted() == ["request.expired", "response.received"], "\(log.map(\.type))")
                    let expired = try #require(log.first { $0.type == "request.expired" })
                    #expect(expired.request["id"] as? Double == Double(ids[0]) && expired.request["status"] as? String == "expired")
                }
                // Erasing a reference forgets the events that carry it.
                let reference = "crm-\(UUID().uuidString)"
                try await pipeline.superuser.withConnection { connection in
                    try await connection.query("UPDATE survey_requests SET reference_id = \(reference)")
                }
                let erased = try await PrivacyRepository(database: pipeline.database).erase(
                    referenceID: reference, replayedMember: #""referenceId":"\#(reference)""#, company: tenant.id)
                #expect(erased == 2)
                let left = try await pipeline.superuser.withConnection {
                    try await $0.query("SELECT count(*)::int FROM webhook_events").one().decode(Int.self)
                }
                #expect(left == 0)
            }
        }
    }

    @Test func aReplyIsNotHeldUpByAnEndpointBeingDeleted() async throws {
        try await Pipeline.with("webhook_delete") { pipeline in
            let tenant = try await pipeline.company()
            let admin = try await Self.admin(pipeline, tenant.id)
            let number = phone()
            try await pipeline.api { client in
                for path in ["a", "b"] {
                    let body = #"{"url":"http://127.0.0.1:9/\#(path)","events":["response.received"]}"#
                    #expect(try await client.execute(uri: "/survey/1.0.0/webhooks", method: .post, headers: admin, body: ByteBuffer(string: body)).status == .created)
                }
                let id = try #require(try await pipeline.send(to: [number], headers: tenant.headers, client: client).first)
                try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }
                // Endpoint "a" is being deleted (its row locked, the cascade under way) while
                // the customer answers: the reply is recorded at once, told to "b" only.
                try await pipeline.superuser.withConnection { connection in
                    try await connection.simpleQuery("BEGIN; DELETE FROM webhook_endpoints WHERE url LIKE '%/a'")
                    let started = ContinuousClock.now
                    let reply = try await pipeline.reply(from: number, "8", client: client)
                    #expect(reply.status == .ok)
                    #expect(ContinuousClock.now - started < .seconds(3))
                    try await connection.simpleQuery("COMMIT")
                }
                #expect(try await pipeline.request(id).score == 8)
                let urls = try await pipeline.superuser.withConnection { connection in
                    try await connection.query(
                        "SELECT e.url FROM webhook_deliveries AS d JOIN webhook_endpoints AS e USING (company_id, endpoint_id)"
                    ).map { try $0.decode(String.self) }
                }
                #expect(urls == ["http://127.0.0.1:9/b"])
            }
        }
    }

    // MARK: Retries and health

    @Test func failuresAreRetriedWithBackoffRetryAfterHonouredAndGoneDisables() async throws {
        try await Pipeline.with("webhook_retries") { pipeline in
            try await Self.withReceiver(pipeline) { receiver in
                let tenant = try await pipeline.company()
                let admin = try await Self.admin(pipeline, tenant.id)
                let number = phone()
                try await pipeline.api { client in
                    let flaky = try await Self.register("flaky", receiver: receiver, headers: admin, client: client)
                    let gone = try await Self.register("gone", receiver: receiver, headers: admin, client: client, behaviour: "gone")
                    try await receiver.configure("flaky", then: ["status:500", "reset", "retry-after:1", "redirect", "status:999"])
                    _ = try await pipeline.send(to: [number], headers: tenant.headers, client: client)
                    try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }
                    _ = try await pipeline.reply(from: number, "10", client: client)
                    let dispatcher = pipeline.dispatcher { $0.retrySchedule = WebhookRetrySchedule(steps: Array(repeating: .milliseconds(200), count: 6)) }
                    try await Self.running(pipeline, [dispatcher]) { try await receiver.log("flaky").count >= 6 }

                    let attempts = try await receiver.log("flaky")
                    #expect(attempts.count == 6)
                    #expect(Set(attempts.map(\.id)).count == 1, "the webhook-id is the same in every attempt")
                    #expect(attempts.allSatisfy { $0.verified == [true] })
                    // Retry-After: 1 was waited for (the schedule alone says 200 ms ± 20 %).
                    #expect(attempts[3].receivedAt.timeIntervalSince(attempts[2].receivedAt) >= 0.95)
                    let log = try Self.jsonArray(
                        try await client.execute(uri: "/survey/1.0.0/webhooks/\(flaky.id)/deliveries", method: .get, headers: admin))
                    let delivery = try #require(log.first)
                    #expect(delivery["status"] as? String == "succeeded")
                    let tries = try #require(delivery["attempts"] as? [[String: Any]])
                    #expect(tries.map { $0["httpStatus"] as? Int } == [500, nil, 429, 302, nil, 200])
                    // A status outside HTTP's range is a failure, recorded without it (a
                    // constraint broken by one attempt held up the whole batch's record).
                    #expect(tries[4]["error"] as? String == "invalid HTTP status 999")
                    #expect((tries[1]["error"] as? String)?.contains("reset") == true || (tries[1]["error"] as? String)?.contains("closed") == true, "\(tries[1])")
                    #expect(tries[3]["error"] as? String == "redirects are not followed")
                    // A short, printable excerpt of what came back.
                    let excerpt = try #require(tries[0]["responseExcerpt"] as? String)
                    #expect(excerpt.hasPrefix("failure") && excerpt.count <= 256 && !excerpt.contains("\u{1b}"))

                    // 410 Gone: one attempt, then the endpoint is disabled and says why.
                    #expect(try await receiver.log("gone").count == 1)
                    let shown = try Self.json(try await client.execute(uri: "/survey/1.0.0/webhooks/\(gone.id)", method: .get, headers: admin))
                    #expect(shown["enabled"] as? Bool == false)
                    #expect(shown["disabledReason"] as? String == "the endpoint answered 410 Gone")
                    #expect(shown["secret"] == nil)
                    // Enabled again by the company: the reason goes.
                    let enabled = try Self.json(
                        try await client.execute(
                            uri: "/survey/1.0.0/webhooks/\(gone.id)", method: .patch, headers: admin, body: ByteBuffer(string: #"{"enabled":true}"#)))
                    #expect(enabled["enabled"] as? Bool == true && enabled["disabledReason"] is NSNull)
                }
            }
        }
    }

    @Test func anEndpointFailingForFiveDaysIsDisabled() async throws {
        try await Pipeline.with("webhook_five_days") { pipeline in
            try await Self.withReceiver(pipeline) { receiver in
                let tenant = try await pipeline.company()
                let admin = try await Self.admin(pipeline, tenant.id)
                let number = phone()
                try await pipeline.api { client in
                    let endpoint = try await Self.register("down", receiver: receiver, headers: admin, client: client, behaviour: "status:503")
                    _ = try await pipeline.send(to: [number], headers: tenant.headers, client: client)
                    try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }
                    // Failing for four days: one more failure does not disable it...
                    try await pipeline.superuser.withConnection { connection in
                        try await connection.query("UPDATE webhook_endpoints SET failing_since = now() - interval '4 days'")
                    }
                    _ = try await pipeline.reply(from: number, "7", client: client)
                    try await Self.running(pipeline, [pipeline.dispatcher()]) { try await receiver.log("down").count >= 1 }
                    var shown = try Self.json(try await client.execute(uri: "/survey/1.0.0/webhooks/\(endpoint.id)", method: .get, headers: admin))
                    #expect(shown["enabled"] as? Bool == true && shown["failingSince"] is String)
                    // ...five days does. (On a loaded machine the first run may have made a
                    // retry before it stopped: counted from here.)
                    let attemptsBefore = try await receiver.log("down").count
                    try await pipeline.superuser.withConnection { connection in
                        try await connection.query("UPDATE webhook_endpoints SET failing_since = now() - interval '5 days 1 minute'")
                        try await connection.query("UPDATE webhook_deliveries SET next_attempt_at = now() WHERE state = 'pending'")
                    }
                    try await Self.running(pipeline, [pipeline.dispatcher()]) { try await receiver.log("down").count > attemptsBefore }
                    try await Task.sleep(for: .milliseconds(300))
                    shown = try Self.json(try await client.execute(uri: "/survey/1.0.0/webhooks/\(endpoint.id)", method: .get, headers: admin))
                    #expect(shown["enabled"] as? Bool == false)
                    #expect(shown["disabledReason"] as? String == "every delivery failed for 5 days")
                    // A streak that reached five days with no attempt since: disabled by the sweep.
                    let quiet = try await Self.register("quiet", receiver: receiver, headers: admin, client: client)
                    try await pipeline.superuser.withConnection { connection in
                        try await connection.query(
                            "UPDATE webhook_endpoints SET failing_since = now() - interval '6 days' WHERE endpoint_id = \(quiet.id)")
                    }
                    try await Self.running(pipeline, [pipeline.dispatcher()], timeout: .seconds(5)) {
                        try Self.json(
                            try await client.execute(uri: "/survey/1.0.0/webhooks/\(quiet.id)", method: .get, headers: admin))["enabled"] as? Bool == false
                    }
                    let quietShown = try Self.json(try await client.execute(uri: "/survey/1.0.0/webhooks/\(quiet.id)", method: .get, headers: admin))
                    #expect(quietShown["enabled"] as? Bool == false && quietShown["disabledReason"] as? String == "every delivery failed for 5 days")
                    // A disabled endpoint is not tried again.
                    try await pipeline.superuser.withConnection { connection in
                        try await connection.query("UPDATE webhook_deliveries SET next_attempt_at = now() WHERE state = 'pending'")
                    }
                    try await Self.running(pipeline, [pipeline.dispatcher()], timeout: .milliseconds(800)) { false }
                    #expect(try await receiver.log("down").count == attemptsBefore + 1)
                }
            }
        }
    }

    // MARK: Rotation, test, replay

    @Test func rotationSignsWithBothSecretsAndTestAndRetryAnswerWithTheAttempt() async throws {
        try await Pipeline.with("webhook_rotation") { pipeline in
            try await Self.withReceiver(pipeline) { receiver in
                let tenant = try await pipeline.company()
                let admin = try await Self.admin(pipeline, tenant.id)
                try await pipeline.api { client in
                    let endpoint = try await Self.register("rotating", receiver: receiver, headers: admin, client: client)
                    let rotated = try Self.json(
                        try await client.execute(uri: "/survey/1.0.0/webhooks/\(endpoint.id)/rotate-secret", method: .post, headers: admin))
                    let newSecret = try #require(rotated["secret"] as? String)
                    #expect(newSecret != endpoint.secret && newSecret.hasPrefix("whsec_"))
                    let expires = try #require((rotated["previousSecretExpiresAt"] as? String).flatMap(Timestamp.parseInstant))
                    #expect(abs(expires.timeIntervalSinceNow - 86_400) < 120)
                    try await receiver.configure("rotating", secrets: [endpoint.secret, newSecret])

                    // /test: a ping, signed with both, and the attempt's outcome.
                    let ping = try await client.execute(uri: "/survey/1.0.0/webhooks/\(endpoint.id)/test", method: .post, headers: admin)
                    #expect(ping.status == .ok)
                    let outcome = try Self.json(ping)
                    #expect(outcome["succeeded"] as? Bool == true && outcome["httpStatus"] as? Int == 200 && outcome["status"] as? String == "succeeded")
                    let received = try #require(try await receiver.log("rotating").last)
                    #expect(received.type == "ping" && received.signatures == 2 && received.verified == [true, true])

                    // A failing endpoint: /test says so, and the ping is not retried.
                    try await receiver.configure("rotating", behaviour: "status:500")
                    let failing = try Self.json(try await client.execute(uri: "/survey/1.0.0/webhooks/\(endpoint.id)/test", method: .post, headers: admin))
                    #expect(failing["succeeded"] as? Bool == false && failing["httpStatus"] as? Int == 500 && failing["status"] as? String == "failed")
                    let deliveryID = try #require(failing["deliveryId"] as? Int)
                    let failedOnly = try Self.jsonArray(
                        try await client.execute(uri: "/survey/1.0.0/webhooks/\(endpoint.id)/deliveries?status=failed", method: .get, headers: admin))
                    #expect(failedOnly.map { $0["id"] as? Int } == [deliveryID])

                    // Replayed by hand once the endpoint is back: same webhook-id.
                    try await receiver.configure("rotating", behaviour: "ok")
                    let retried = try Self.json(
                        try await client.execute(
                            uri: "/survey/1.0.0/webhooks/\(endpoint.id)/deliveries/\(deliveryID)/retry", method: .post, headers: admin))
                    #expect(retried["succeeded"] as? Bool == true && retried["status"] as? String == "succeeded")
                    let log = try await receiver.log("rotating")
                    #expect(log.count == 3 && log[1].id == log[2].id && log[2].verified == [true, true])
                    // Replayed again while the endpoint fails: the delivery stays succeeded.
                    try await receiver.configure("rotating", behaviour: "status:502")
                    let replayed = try Self.json(
                        try await client.execute(
                            uri: "/survey/1.0.0/webhooks/\(endpoint.id)/deliveries/\(deliveryID)/retry", method: .post, headers: admin))
                    #expect(replayed["succeeded"] as? Bool == false && replayed["status"] as? String == "succeeded")
                    let succeededOnly = try Self.jsonArray(
                        try await client.execute(uri: "/survey/1.0.0/webhooks/\(endpoint.id)/deliveries?status=succeeded", method: .get, headers: admin))
                    #expect(succeededOnly.contains { $0["id"] as? Int == deliveryID && ($0["attempts"] as? [Any])?.count == 3 })
                    let page = try await client.execute(
                        uri: "/survey/1.0.0/webhooks/\(endpoint.id)/deliveries?limit=1", method: .get, headers: admin)
                    #expect(try Self.jsonArray(page).count == 1)
                    #expect(page.headers[HTTPField.Name("Link")!]?.contains("after=") == true)
                }
            }
        }
    }

    // MARK: Isolation

    @Test func aHangingEndpointDelaysNeitherAnotherCompanyNorTheSMS() async throws {
        try await Pipeline.with("webhook_isolation") { pipeline in
            try await Self.withReceiver(pipeline) { receiver in
                let slow = try await pipeline.company()
                let fast = try await pipeline.company()
                let slowAdmin = try await Self.admin(pipeline, slow.id)
                let fastAdmin = try await Self.admin(pipeline, fast.id)
                let slowNumbers = (0..<40).map { _ in phone() }
                let fastNumbers = (0..<40).map { _ in phone() }
                try await pipeline.api { client in
                    _ = try await Self.register("hangs", receiver: receiver, headers: slowAdmin, client: client, behaviour: "hang")
                    _ = try await Self.register("quick", receiver: receiver, headers: fastAdmin, client: client)
                    _ = try await pipeline.send(to: slowNumbers, headers: slow.headers, client: client)
                    _ = try await pipeline.send(to: fastNumbers, headers: fast.headers, client: client)
                    try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }
                    // The hanging company's events first, so they are claimed first.
                    for number in slowNumbers { _ = try await pipeline.reply(from: number, "5", client: client) }
                    for number in fastNumbers { _ = try await pipeline.reply(from: number, "10", client: client) }
                    // And SMS to send meanwhile, by the same worker process's SMS side.
                    let moreNumbers = (0..<40).map { _ in phone() }
                    _ = try await pipeline.send(to: moreNumbers, headers: fast.headers, client: client)
                    let started = Date()
                    let smsDone = Mutex<Date?>(nil)
                    let mostUnderWay = Mutex(0)
                    // Two dispatchers: the cap holds across workers. The default cap (16) is also
                    // as many connections as a client keeps to a host: both endpoints are on
                    // the same host and port, and the hanging one must not take the other's.
                    // Attempts time out after 5 s here: everything else must be done well before.
                    func dispatcher() -> WebhookDispatcher {
                        var configuration = Pipeline.webhookSenderConfiguration
                        configuration.timeout = .seconds(5)
                        return pipeline.dispatcher(sender: WebhookSender(configuration: configuration, logger: pipeline.logger))
                    }
                    try await Self.running(pipeline, [dispatcher(), dispatcher(), pipeline.worker()]) {
                        if try await pipeline.jobsLeft() == 0 { smsDone.withLock { $0 = $0 ?? Date() } }
                        // Attempts under way at the hanging endpoint: its live leases, as the claim counts them.
                        let underWay = try await pipeline.superuser.withConnection { connection in
                            try await connection.query(
                                """
                                SELECT count(*)::int FROM webhook_deliveries AS d JOIN webhook_endpoints AS e USING (company_id, endpoint_id)
                                 WHERE e.url LIKE '%/hangs' AND d.lease_id IS NOT NULL AND d.leased_until > now()
                                """
                            ).one().decode(Int.self)
                        }
                        mostUnderWay.withLock { $0 = max($0, underWay) }
                        return try await receiver.log("quick").count >= 40 && smsDone.withLock { $0 != nil }
                    }
                    let quick = try await receiver.log("quick")
                    #expect(quick.count == 40)
                    #expect(quick.allSatisfy { $0.verified == [true] })
                    // All well within one attempt's timeout, which the hanging ones wait out.
                    let elapsed = (quick.map(\.receivedAt).max() ?? .distantFuture).timeIntervalSince(started)
                    #expect(elapsed < 3.5, "\(elapsed)")
                    let smsElapsed = try #require(smsDone.withLock { $0 }).timeIntervalSince(started)
                    #expect(smsElapsed < 3.5, "\(smsElapsed)")
                    #expect(pipeline.gateway.accepted.filter { moreNumbers.contains($0.to) }.count == 40)
                    // The hanging endpoint never had more than its cap under way, across both.
                    let cap = WebhookDispatcher.Configuration().perEndpoint
                    #expect(mostUnderWay.withLock { $0 } == cap, "it had its cap's worth under way, and no more")
                }
            }
        }
    }

    @Test func oneCompanysEndpointsTogetherHoldAtMostItsShare() async throws {
        try await Pipeline.with("webhook_company_cap") { pipeline in
            try await Self.withReceiver(pipeline) { receiver in
                let tenant = try await pipeline.company()
                let admin = try await Self.admin(pipeline, tenant.id)
                let numbers = (0..<20).map { _ in phone() }
                try await pipeline.api { client in
                    _ = try await Self.register("first", receiver: receiver, headers: admin, client: client, behaviour: "hang")
                    _ = try await Self.register("second", receiver: receiver, headers: admin, client: client, behaviour: "hang")
                    _ = try await pipeline.send(to: numbers, headers: tenant.headers, client: client)
                    try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }
                    for number in numbers { _ = try await pipeline.reply(from: number, "6", client: client) }
                    // Each endpoint may have 16 under way, the company 3 in all.
                    let most = Mutex(0)
                    try await Self.running(pipeline, [pipeline.dispatcher { $0.perCompany = 3 }], timeout: .seconds(1)) {
                        let underWay = try await pipeline.superuser.withConnection { connection in
                            try await connection.query(
                                "SELECT count(*)::int FROM webhook_deliveries WHERE lease_id IS NOT NULL AND leased_until > now()"
                            ).one().decode(Int.self)
                        }
                        most.withLock { $0 = max($0, underWay) }
                        return false
                    }
                    #expect(most.withLock { $0 } == 3)
                    let received = try await receiver.log("first").count + receiver.log("second").count
                    #expect(received == 3, "\(received)")
                }
            }
        }
    }

    @Test func twoDispatchersNeverDeliverTheSameAttemptTwice() async throws {
        try await Pipeline.with("webhook_two_workers") { pipeline in
            try await Self.withReceiver(pipeline) { receiver in
                let tenant = try await pipeline.company()
                let admin = try await Self.admin(pipeline, tenant.id)
                let numbers = (0..<300).map { _ in phone() }
                try await pipeline.api { client in
                    _ = try await Self.register("shared", receiver: receiver, headers: admin, client: client)
                    _ = try await pipeline.send(to: numbers, headers: tenant.headers, client: client)
                    try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }
                    for number in numbers { _ = try await pipeline.reply(from: number, "8", client: client) }
                    try await Self.running(pipeline, [pipeline.dispatcher(), pipeline.dispatcher()]) {
                        try await receiver.log("shared").count >= numbers.count
                    }
                    try await Task.sleep(for: .milliseconds(300))
                    let log = try await receiver.log("shared")
                    #expect(log.count == numbers.count)
                    #expect(Set(log.map(\.id)).count == numbers.count, "each event delivered once")
                    #expect(log.allSatisfy { $0.verified == [true] }, "every delivery verified by the reference library")
                }
            }
        }
    }

    // MARK: SSRF

    /// A resolver answering from a table: DNS as an attacker who controls a name would set it.
    struct TableResolver: HostResolver {
        var table: [String: [[UInt8]]]
        func addresses(of host: String) async throws -> [[UInt8]] {
            guard let addresses = table[host] else { throw HostResolutionError(host: host, code: -2) }
            return addresses
        }
    }

    @Test func aNameThatResolvesToAPrivateAddressIsNeverConnectedTo() async throws {
        try await Self.withReceiverAlone { receiver, client in
            var configuration = WebhookSender.Configuration()
            configuration.allowPrivateAddresses = false
            let sender = WebhookSender(
                configuration: configuration,
                resolver: TableResolver(table: ["hooks.example.com": [[127, 0, 0, 1]], "mixed.example.com": [[93, 184, 216, 34], [10, 0, 0, 7]]]),
                eventLoopGroup: MultiThreadedEventLoopGroup.singleton, logger: TestDatabase.logger)
            defer { Task { await sender.shutdown() } }
            let secret = WebhookSecret.generate()
            for url in ["https://hooks.example.com:\(receiver.port)/victim", "https://mixed.example.com/victim", "https://unknown.example.com/victim"] {
                let result = await sender.send(WebhookMessage(id: "evt_1", body: Array("{}".utf8), url: url, secrets: [secret]))
                #expect(!result.succeeded && result.statusCode == nil, "\(url)")
                #expect(result.error?.contains("non-public") == true || result.error?.contains("did not resolve") == true, "\(result.error ?? "")")
            }
            // Address literals and http are refused before any look-up.
            for url in ["http://127.0.0.1:\(receiver.port)/victim", "https://169.254.169.254/latest/meta-data", "https://[::ffff:127.0.0.1]/x"] {
                let result = await sender.send(WebhookMessage(id: "evt_1", body: Array("{}".utf8), url: url, secrets: [secret]))
                #expect(result.error?.hasPrefix("url refused") == true, "\(url): \(result.error ?? "")")
            }
            let reached = try await receiver.log("victim")
            #expect(reached.isEmpty)
        }
    }

    /// A refused connection is a failed attempt at once (the HTTP client's own retries
    /// until its deadline held the endpoint's slot for the whole timeout).
    @Test func aRefusedConnectionFailsAtOnce() async throws {
        var configuration = Pipeline.webhookSenderConfiguration
        // A timeout far above the bound, so that waiting for it cannot pass, and a bound far above the
        // milliseconds a refusal takes, so that a loaded machine cannot fail it.
        configuration.timeout = .seconds(60)
        let sender = WebhookSender(configuration: configuration, logger: TestDatabase.logger)
        let result = await sender.send(
            WebhookMessage(id: "evt_1", body: Array("{}".utf8), url: "http://127.0.0.1:9/nobody", secrets: [WebhookSecret.generate()]))
        await sender.shutdown()
        #expect(result.error == "connection refused", "\(result.error ?? "")")
        #expect(result.duration < .seconds(15), "\(result.duration)")
    }

    static func withReceiverAlone(_ body: (WebhookReceiver, HTTPClient) async throws -> Void) async throws {
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let receiver = try await WebhookReceiver.start(client: client)
            defer { receiver.stop() }
            try await body(receiver, client)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }
}
