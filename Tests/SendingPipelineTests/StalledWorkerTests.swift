import Foundation
import Postgres
import SurveyDomain
import SurveyStorage
import SurveyWorker
import Synchronization
import Testing

/// Review of issue 12's worker: a worker stalled past its lease (a long GC pause, a slow
/// database) must not start, retry or release a job that the reaper gave back and another
/// worker claimed since; it would send it a second time, or hand it to a third worker.
@Suite struct StalledWorkerTests {
    @Test func aStalledClaimTouchesNothingAnotherClaimHolds() async throws {
        let pipeline = try await Pipeline.make("stalled")
        let tenant = try await pipeline.company()
        _ = try await pipeline.api { client in
            try await pipeline.send(to: [phone(), phone()], headers: tenant.headers, client: client)
        }
        let queue = QueueRepository(database: Database(client: pipeline.workerPool), policy: SendingPolicy())
        let stalled = try await queue.claim(limit: 10, lease: .seconds(60))
        #expect(stalled.count == 2)
        // Its lease runs out before it starts anything; the reaper gives the jobs back and
        // another worker claims them.
        try await pipeline.superuser.withConnection { connection in
            try await connection.query("UPDATE sms_jobs SET leased_until = now() - interval '1 second'")
        }
        #expect(try await queue.failExpiredLeases() == (failed: 0, returned: 2))
        let live = try await queue.claim(limit: 10, lease: .seconds(60))
        #expect(Set(live.map(\.id)) == Set(stalled.map(\.id)))

        // The stalled worker wakes up: its mark finds nothing it may start...
        let marked = try await queue.markStarted(stalled)
        #expect(!marked.claimHeld)
        // ...and its release and retry leave the live claim alone.
        try await queue.complete([(stalled[0], .release), (stalled[1], .retry(after: .seconds(1)))])
        let held = try await pipeline.superuser.withConnection { connection in
            try await connection.query(
                "SELECT count(*)::int FROM sms_jobs WHERE lease_id = \(live[0].leaseID) AND leased_until > now() AND claim_position IS NOT NULL"
            ).one().decode(Int.self)
        }
        #expect(held == 2)
        // The live worker marks and owns them.
        #expect(try await queue.markStarted(live).claimHeld)
        await pipeline.close()
    }

    /// Sends noted on their claim (`complete(noting:)`) wait for the claim's full record;
    /// a worker that dies before it leaves them to the reaper, which records them as sent,
    /// not `uncertain`. A note made after the reaper took the claim is recorded in full at
    /// once, so the requests it failed as `uncertain` get the truth.
    @Test func aDeadWorkersNotedSendsAreRecordedAsSent() async throws {
        let pipeline = try await Pipeline.make("noted")
        let tenant = try await pipeline.company()
        let ids = try await pipeline.api { client in
            try await pipeline.send(to: [phone(), phone(), phone(), phone()], headers: tenant.headers, client: client)
        }
        let queue = QueueRepository(database: Database(client: pipeline.workerPool), policy: SendingPolicy())
        let jobs = try await queue.claim(limit: 10, lease: .seconds(60))
        #expect(jobs.count == 4)
        #expect(try await queue.markStarted(jobs).claimHeld)
        let sids = jobs.map { _ in Pipeline.messageSID() }
        // Three noted; the fourth's outcome never comes (the worker dies mid-call).
        let noted = try await queue.complete(
            zip(jobs.prefix(3), sids).map { ($0, .sent(providerMessageID: $1, segments: 1)) }, noting: true)
        #expect(!noted.claimHeld && noted.optedOut.isEmpty)
        let byRequest = Dictionary(uniqueKeysWithValues: jobs.map { ($0.request.rawValue, $0) })
        for id in ids { #expect(try await pipeline.request(id).status == "queued") }

        try await pipeline.superuser.withConnection { connection in
            try await connection.query("UPDATE sms_jobs SET leased_until = now() - interval '1 second'")
        }
        #expect(try await queue.failExpiredLeases() == (failed: 1, returned: 0))
        for id in ids {
            let job = try #require(byRequest[Int64(id)])
            let request = try await pipeline.request(id)
            if job.id == jobs[3].id {
                #expect(request.status == "failed" && request.failure == "uncertain")
            } else {
                #expect(request.status == "sent" && request.messageID == sids[jobs.firstIndex(of: job)!])
            }
        }
        #expect(try await pipeline.jobsLeft() == 0)

        // The stalled worker's last outcome comes in after the reaper: recorded at once.
        #expect(try await queue.complete([(jobs[3], .sent(providerMessageID: sids[3], segments: 1))], noting: true).claimHeld == false)
        let last = try await pipeline.request(Int(jobs[3].request.rawValue))
        #expect(last.status == "sent" && last.failure == nil && last.messageID == sids[3])
        let notes = try await pipeline.superuser.withConnection { connection in
            try await connection.query("SELECT count(*)::int FROM sms_claim_sent").one().decode(Int.self)
        }
        #expect(notes == 0)
        await pipeline.close()
    }

    /// A long claim does not keep its sent SMS `queued` until it ends: what it noted is
    /// recorded in full every `fullRecordInterval` while the claim still runs.
    @Test func aLongClaimRecordsWhatItNotedAsItGoes() async throws {
        let pipeline = try await Pipeline.make("noted_periodic")
        let tenant = try await pipeline.company()
        try await pipeline.api { client in
            _ = try await pipeline.send(to: (0..<20).map { _ in phone() }, headers: tenant.headers, client: client)
        }
        // Windows of one, 100 ms each at the gateway: one claim of 20 lasts about 2 s.
        pipeline.gateway.setLatency(.milliseconds(100))
        var configuration = Pipeline.fastWorker
        configuration.lanes = 1
        configuration.concurrency = 1
        configuration.fullRecordInterval = .milliseconds(50)
        let seen = Atomic<Bool>(false)
        try await pipeline.run([pipeline.worker(configuration)], timeout: .seconds(20)) {
            let (sent, claims) = try await pipeline.superuser.withConnection { connection in
                try await connection.query(
                    "SELECT (SELECT count(*) FROM survey_requests WHERE status = 'sent')::int, (SELECT count(*) FROM sms_claims)::int"
                ).one().decode((Int, Int).self)
            }
            if sent > 0 && claims > 0 { seen.store(true, ordering: .relaxed) }
            return try await pipeline.jobsLeft() == 0
        }
        let sentWhileClaimed = seen.load(ordering: .relaxed)
        #expect(sentWhileClaimed, "requests became sent only when their claim ended")
        #expect(try await pipeline.jobsLeft() == 0)
        await pipeline.close()
    }

    /// A claim's end records what it noted, with its progress row, in one commit.
    @Test func aClaimsEndRecordsWhatItNoted() async throws {
        let pipeline = try await Pipeline.make("noted_finish")
        let tenant = try await pipeline.company()
        let ids = try await pipeline.api { client in
            try await pipeline.send(to: [phone(), phone()], headers: tenant.headers, client: client)
        }
        let queue = QueueRepository(database: Database(client: pipeline.workerPool), policy: SendingPolicy())
        let jobs = try await queue.claim(limit: 10, lease: .seconds(60))
        #expect(try await queue.markStarted(jobs).claimHeld)
        try await queue.complete(jobs.map { ($0, .sent(providerMessageID: Pipeline.messageSID(), segments: 2)) }, noting: true)
        #expect(try await pipeline.jobsLeft() == 2)
        try await queue.finish(claim: jobs[0].leaseID)
        for id in ids {
            let request = try await pipeline.request(id)
            #expect(request.status == "sent" && request.segments == 2)
        }
        #expect(try await pipeline.jobsLeft() == 0)
        let left = try await pipeline.superuser.withConnection { connection in
            try await connection.query("SELECT (SELECT count(*) FROM sms_claims)::int + (SELECT count(*) FROM sms_claim_sent)::int")
                .one().decode(Int.self)
        }
        #expect(left == 0)
        await pipeline.close()
    }
}
