import APITestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import Postgres
import SurveyAPI
import SurveyDomain
import SurveyStorage
import TestSupport
import Testing

/// An `Idempotency-Key` whose send failed must let the client's retry through. Found by
/// `bench/failover.py`: the send in flight when the primary died had its key claimed (a
/// transaction of its own, replicated), its work failed, and the release that should have
/// followed could not reach the database either; every retry got 409 for the claim's two
/// minutes, and the send was never made. Here the database fails the work once and refuses
/// the release (triggers in a scratch database), which is what the failover did.
@Suite struct IdempotencyTests {
    @Test func aSendWhoseWorkFailedLeavesItsKeyFreeForTheRetry() async throws {
        let url = try await TestDatabase.migratedScratchDatabase("idempotency")
        let superuser = try await TestDatabase.connect(url: url)
        try await superuser.simpleQuery(
            """
            CREATE SEQUENCE fail_once;
            CREATE FUNCTION fail_the_first_send() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
            BEGIN
                IF nextval('fail_once') = 1 THEN RAISE EXCEPTION 'the database went away'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER fail_the_first_send BEFORE INSERT ON survey_requests
                FOR EACH ROW EXECUTE FUNCTION fail_the_first_send();
            CREATE FUNCTION refuse_releases() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'the database is still away'; END $$;
            CREATE TRIGGER refuse_releases BEFORE DELETE ON idempotency_keys
                FOR EACH ROW EXECUTE FUNCTION refuse_releases();
            """)
        await superuser.close()
        let database = Database(client: Database.applicationPool(
            url: url, applicationName: "idempotency-test", maximumConnections: 2, logger: TestDatabase.logger))
        let (_, _, token) = try await CompanyRepository(database: database).create(name: "Retry", settings: .alwaysOpen)
        let application = Application(router: buildRouter(configuration: Harness.configuration(), database: database))
        try await application.testContract { client in
            var headers: HTTPFields = [.authorization: "Bearer \(token.secret)", .contentType: "application/json"]
            let survey = try await Self.createSurvey(client, headers: headers)
            headers[HTTPField.Name("Idempotency-Key")!] = "order-1"
            let payload = #"{"requests":[{"channel":"SMS","destination":"+32470123456"}]}"#
            let failed = try await client.send(.post, "\(base)/surveys/\(survey)/send", headers: headers, body: payload)
            #expect(failed.status.code >= 500, "\(failed.status) \(failed.text)")
            let retried = try await client.send(.post, "\(base)/surveys/\(survey)/send", headers: headers, body: payload)
            #expect(retried.status == .accepted, "the retry with the same key: \(retried.status) \(retried.text)")
            #expect(retried.headers[HTTPField.Name("Idempotent-Replayed")!] == nil)
            // And the one after it replays that answer.
            let replayed = try await client.send(.post, "\(base)/surveys/\(survey)/send", headers: headers, body: payload)
            #expect(replayed.status == .accepted)
            #expect(replayed.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
        }
        await database.client.shutDown()
    }

    /// Two sends with one key at once: the second waits for the first's transaction (the
    /// claim's uncommitted row), then replays its answer. One request is made, not two, and
    /// neither client gets 409. The overlap is made certain: the first send is held inside
    /// its transaction (a lock on the job table) until the second is seen waiting too.
    @Test(.timeLimit(.minutes(1))) func twoSendsWithOneKeyAtOnceMakeOneRequest() async throws {
        let url = try await TestDatabase.migratedScratchDatabase("idempotencytogether")
        let name = "idempotency-together-\(UInt32.random(in: 0...UInt32.max))"
        let database = Database(client: Database.applicationPool(
            url: url, applicationName: name, maximumConnections: 4, logger: TestDatabase.logger))
        let (_, _, token) = try await CompanyRepository(database: database).create(name: "Together", settings: .alwaysOpen)
        let application = Application(router: buildRouter(configuration: Harness.configuration(), database: database))
        let holder = try await TestDatabase.connect(url: url)
        let observer = try await TestDatabase.connect(url: url)
        @Sendable func waitingOnLocks() async throws -> Int {
            try await observer.query(
                "SELECT count(*)::int FROM pg_stat_activity WHERE application_name = \(name) AND wait_event_type = 'Lock'"
            ).one().decode(Int.self)
        }
        try await application.testContract { client in
            var headers: HTTPFields = [.authorization: "Bearer \(token.secret)", .contentType: "application/json"]
            let survey = try await Self.createSurvey(client, headers: headers)
            headers[HTTPField.Name("Idempotency-Key")!] = "together"
            let payload = #"{"requests":[{"channel":"SMS","destination":"+32470123456"}]}"#
            // Sends insert jobs; a SHARE lock on their table holds the first one there,
            // after its claim.
            try await holder.simpleQuery("BEGIN; LOCK TABLE sms_jobs IN SHARE MODE")
            async let first = client.send(.post, "\(base)/surveys/\(survey)/send", headers: headers, body: payload)
            var waiting = 0
            for _ in 0..<100 where waiting < 1 {
                try await Task.sleep(for: .milliseconds(50))
                waiting = try await waitingOnLocks()
            }
            try #require(waiting == 1, "the first send never reached the lock")
            // The second waits on the first's uncommitted claim.
            async let second = client.send(.post, "\(base)/surveys/\(survey)/send", headers: headers, body: payload)
            for _ in 0..<100 where waiting < 2 {
                try await Task.sleep(for: .milliseconds(50))
                waiting = try await waitingOnLocks()
            }
            #expect(waiting == 2, "the second send did not wait for the first")
            try await holder.simpleQuery("COMMIT")
            let responses = try await [first, second]
            #expect(responses.map(\.status) == [.accepted, .accepted], "\(responses.map(\.text))")
            #expect(responses[0].headers[HTTPField.Name("Idempotent-Replayed")!] == nil)
            #expect(responses[1].headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
            #expect(responses[0].text == responses[1].text)
        }
        let requests = try await observer.query("SELECT count(*)::int FROM survey_requests").one().decode(Int.self)
        #expect(requests == 1)
        await holder.close()
        await observer.close()
        await database.client.shutDown()
    }

    /// A survey with one English question, made through the API.
    static func createSurvey(_ client: some TestClientProtocol, headers: HTTPFields) async throws -> Int {
        let created = try await client.send(
            .post, "\(base)/surveys", headers: headers,
            body: #"{"name":"support","interactionType":"care","questions":[{"body":"How likely?","language":"en"}]}"#)
        return try #require(created.object["id"] as? Int, "\(created.text)")
    }
}
