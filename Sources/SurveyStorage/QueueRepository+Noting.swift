import Foundation
import Postgres
import SurveyDomain

extension QueueRepository {
    /// Notes sends the provider accepted on the jobs' own rows and marks `next` as started,
    /// in one pipeline (one commit). Cheap: no trigger, no other table. The sends are
    /// recorded in full later, in batches (`complete`); until then a dead worker's noted
    /// sends are recorded by the reaper, not failed as uncertain. Only jobs the claim still
    /// holds are noted.
    public func note(
        _ sent: [(Job, providerMessageID: String, segments: Int)], starting next: [Job], recheckOptOuts: Bool = true
    ) async throws -> Marked {
        guard !sent.isEmpty else { return try await markStarted(next, recheckOptOuts: recheckOptOuts) }
        return try await database.client.withConnection { connection in
            let results = try await connection.pipeline(
                [Self.noteSentQuery(sent)] + (next.isEmpty ? [] : [Self.markStartedQuery(next, recheck: recheckOptOuts)]))
            return next.isEmpty ? Marked() : try Self.marked(results[1])
        }
    }

    static func noteSentQuery(_ sent: [(Job, providerMessageID: String, segments: Int)]) -> PostgresQuery {
        """
        UPDATE sms_jobs AS j SET sent_message_id = t.message_id, sent_segments = t.segments
          FROM unnest(\(sent.map(\.0.company.rawValue))::bigint[], \(sent.map(\.0.id))::bigint[], \(sent.map(\.0.leaseID))::text[],
                      \(sent.map(\.providerMessageID))::text[], \(sent.map(\.segments))::int[])
               AS t(company_id, job_id, lease_id, message_id, segments)
         WHERE j.company_id = t.company_id AND j.job_id = t.job_id AND j.lease_id = t.lease_id
        """
    }

    /// Records the noted sends of jobs whose lease ran out (their worker died between the
    /// note and the record), in hash order like every write to `open_surveys`; returns how
    /// many. Runs in the reaper's transaction.
    func recordNotedSends(on connection: PostgresConnection) async throws -> Int {
        let noted = try await connection.query(
            """
            SELECT company_id, job_id, request_id, destination_hash, sent_message_id, sent_segments FROM sms_jobs
             WHERE leased_until < now() AND sent_message_id IS NOT NULL
             ORDER BY destination_hash
               FOR UPDATE SKIP LOCKED
            """
        ).map { row -> (Job, String, Int) in
            let (company, id, request, hash, messageID, segments) = try row.decode(
                (CompanyID, Int64, RequestID, Data, String, Int).self)
            let job = Job(
                company: company, id: id, request: request, destinationHash: hash, destination: "", body: "", attempts: 0,
                createdAt: Date(), optedOut: false, leaseID: "")
            return (job, messageID, segments)
        }
        guard !noted.isEmpty else { return 0 }
        try await connection.query(Self.recordSentQuery(noted, windowSeconds: Int(policy.responseWindow.components.seconds)))
        return noted.count
    }
}
