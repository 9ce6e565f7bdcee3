import Foundation
import SurveyDomain
import SurveyStorage
import NIOCore
import HTTPTypes
import HummingbirdTesting
import Postgres
import TestSupport
import Testing

/// Real `surveyd worker` processes, killed with SIGTERM and SIGKILL mid-batch, again and
/// again, during a 10,000-message dispatch: no SMS is sent twice and none is lost (each is
/// sent once, or failed as `uncertain`), and a killed worker leaves at most its in-flight
/// concurrency uncertain (issue 12: it failed its whole claim, up to a thousand jobs).
@Suite struct KilledWorkerTests {
    static var executable: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("surveyd")
    }

    static let concurrency = 64

    func startWorker(_ pipeline: Pipeline, extra: [String: String] = [:]) throws -> Process {
        let process = Process()
        process.executableURL = Self.executable
        process.arguments = ["worker"]
        var environment = ProcessInfo.processInfo.environment
        environment.merge(
            [
                "DATABASE_URL": pipeline.url, "DESTINATION_HASH_KEY": Pipeline.hashKey, "SMS_PROVIDER": "twilio",
                "TWILIO_API_BASE_URL": pipeline.gateway.baseURL, "TWILIO_ACCOUNT_SID": FakeTwilio.accountSID,
                "TWILIO_AUTH_TOKEN": FakeTwilio.authToken, "SMS_SENDER": Pipeline.sender, "SMS_RATE_LIMIT": "2000",
                "SMS_BATCH_SIZE": "500", "SMS_CONCURRENCY": String(Self.concurrency), "SMS_LEASE_SECONDS": "2",
                "LOG_LEVEL": "critical",
            ].merging(extra, uniquingKeysWith: { _, new in new }), uniquingKeysWith: { _, new in new })
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Waits for a process without blocking a thread of the cooperative pool (which
    /// `waitUntilExit` would, starving the other tests running at the same time).
    func waitForExit(_ process: Process) async {
        while process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
    }

    @Test func killedMidBatchNeverSendsTwiceNorLoses() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.executable.path), "build surveyd first")
        let pipeline = try await Pipeline.make("sigkill")
        pipeline.gateway.setLatency(.milliseconds(3))
        let tenant = try await pipeline.company()
        let numbers = Array(Set((0..<10_000).map { _ in phone() }))
        let ids = try await pipeline.api { client in
            var ids: [Int] = []
            for start in stride(from: 0, to: numbers.count, by: 1000) {
                ids += try await pipeline.send(
                    to: Array(numbers[start..<min(start + 1000, numbers.count)]), headers: tenant.headers, client: client)
            }
            return ids
        }
        #expect(ids.count == numbers.count)

        // Kill workers while they send, again and again: SIGKILL and SIGTERM in turn.
        var leftUncertain: [Int] = []
        for round in 0..<8 {
            let started = try await pipeline.superuser.withConnection { try await $0.query("SELECT now()").one().decode(Date.self) }
            let worker = try startWorker(pipeline)
            try await Task.sleep(for: .milliseconds(Int.random(in: 250...600)))
            kill(worker.processIdentifier, round.isMultiple(of: 2) ? SIGKILL : SIGTERM)
            await waitForExit(worker)
            // What this worker started and neither recorded nor noted as sent: what its death
            // leaves uncertain (the reaper records noted sends as sent).
            leftUncertain.append(try await pipeline.superuser.withConnection { connection in
                try await connection.query(
                    """
                    SELECT count(*)::int FROM sms_jobs AS j JOIN sms_claims AS c ON c.lease_id = j.lease_id
                     WHERE c.claimed_at >= \(started) AND j.claim_position <= c.started_through
                       AND NOT EXISTS (SELECT 1 FROM sms_claim_sent AS n
                                        WHERE n.lease_id = c.lease_id AND j.job_id = ANY(n.job_ids))
                    """
                ).one().decode(Int.self)
            })
        }
        print("sigkill test: started and unrecorded after each kill: \(leftUncertain)")
        #expect(leftUncertain.allSatisfy { $0 <= Self.concurrency }, "\(leftUncertain)")
        // SIGTERM lets a worker finish what it started.
        #expect(leftUncertain.enumerated().filter { !$0.offset.isMultiple(of: 2) }.allSatisfy { $0.element == 0 }, "\(leftUncertain)")
        // One left alive finishes the rest; killed leases run out and fail as uncertain.
        let last = try startWorker(pipeline)
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline, try await pipeline.jobsLeft() > 0 {
            try await Task.sleep(for: .milliseconds(200))
        }
        kill(last.processIdentifier, SIGTERM)
        await waitForExit(last)
        #expect(try await pipeline.jobsLeft() == 0)

        let received = Dictionary(grouping: pipeline.gateway.received, by: \.to).mapValues(\.count)
        #expect(received.values.allSatisfy { $0 == 1 }, "a number got more than one SMS")
        let rows = try await pipeline.superuser.withConnection { connection in
            try await connection.query("SELECT status, failure, provider_message_id FROM survey_requests")
                .map { try $0.decode((String, String?, String?).self) }
        }
        #expect(rows.count == numbers.count)
        let accepted = Set(pipeline.gateway.accepted.compactMap(\.sid))
        var sent = 0
        var uncertain = 0
        for (status, failure, messageID) in rows {
            switch (status, failure) {
            case ("sent", nil):
                sent += 1
                #expect(messageID.map(accepted.contains) == true)
            case ("failed", "uncertain"?):
                uncertain += 1
            default:
                Issue.record("unexpected final state \(status) \(failure ?? "")")
            }
        }
        print("sigkill test: \(sent) sent, \(uncertain) uncertain, \(received.count) received by the gateway")
        #expect(sent + uncertain == numbers.count)
        #expect(uncertain <= leftUncertain.reduce(0, +), "only started jobs may end uncertain")
        #expect(sent >= received.count - uncertain)
        #expect(sent > 0)
        await pipeline.close()
    }

    /// A worker killed while an attempt is under way: the delivery is made again by another
    /// worker once the lease runs out, with the same `webhook-id`, and recorded once.
    @Test func aWebhookAttemptCutShortBySIGKILLIsMadeAgainWithTheSameID() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.executable.path), "build surveyd first")
        try await Pipeline.with("webhook_sigkill") { pipeline in
            let receiver = try await WebhookReceiver.start(client: pipeline.httpClient)
            defer { receiver.stop() }
            let tenant = try await pipeline.company()
            let number = phone()
            let (_, adminToken) = try await CompanyRepository(database: pipeline.database).createToken(company: tenant.id, scope: .admin)
            let admin: HTTPFields = [.authorization: "Bearer \(adminToken.secret)", .contentType: "application/json"]
            try await pipeline.api { client in
                let created = try await client.execute(
                    uri: "/survey/1.0.0/webhooks", method: .post, headers: admin,
                    body: ByteBuffer(string: #"{"url":"\#(receiver.url("crm"))","events":["response.received"]}"#))
                let secret = try #require(try JSONSerialization.jsonObject(with: Data(created.body.readableBytesView)) as? [String: Any])["secret"] as! String
                // The first attempt hangs; later ones are answered.
                try await receiver.configure("crm", secrets: [secret], behaviour: "ok", then: ["hang"])
                _ = try await pipeline.send(to: [number], headers: tenant.headers, client: client)
                try await pipeline.run([pipeline.worker()]) { try await pipeline.jobsLeft() == 0 }
                _ = try await pipeline.reply(from: number, "9", client: client)
            }
            let environment = [
                "WEBHOOK_ALLOW_PRIVATE_URLS": "1", "WEBHOOK_LEASE_SECONDS": "4", "SMS_PROVIDER": "accept-all",
            ]
            let first = try startWorker(pipeline, extra: environment)
            try await receiver.wait(for: "crm", count: 1)
            kill(first.processIdentifier, SIGKILL)
            await waitForExit(first)
            let second = try startWorker(pipeline, extra: environment)
            let log = try await receiver.wait(for: "crm", count: 2, timeout: .seconds(30))
            kill(second.processIdentifier, SIGTERM)
            await waitForExit(second)
            #expect(log.count == 2)
            #expect(log.count == 2 && log[0].id == log[1].id, "the same webhook-id")
            #expect(log.allSatisfy { $0.verified == [true] })
            let (state, attempts) = try await pipeline.superuser.withConnection { connection in
                try await connection.query("SELECT state, attempts FROM webhook_deliveries").one().decode((String, Int).self)
            }
            #expect(state == "succeeded" && attempts == 1, "the cut attempt left no record; the second succeeded")
        }
    }
}
