import Foundation
import Postgres
import SurveyDomain
import SurveyStorage
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
}
