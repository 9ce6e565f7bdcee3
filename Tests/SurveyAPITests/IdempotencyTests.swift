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
            let created = try await client.send(
                .post, "\(base)/surveys", headers: headers,
                body: #"{"name":"support","interactionType":"care","questions":[{"body":"How likely?","language":"en"}]}"#)
            let survey = try #require(created.object["id"] as? Int, "\(created.text)")
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
    /// neither client gets 409.
    @Test func twoSendsWithOneKeyAtOnceMakeOneRequest() async throws {
        let harness = try await Harness()
        let tenant = try await harness.company()
        try await harness.test { client in
            let survey = try await client.createSurvey(for: tenant)
            var headers = tenant.headers
            headers[HTTPField.Name("Idempotency-Key")!] = "together-\(UInt32.random(in: 0...UInt32.max))"
            let payload = #"{"requests":[{"channel":"SMS","destination":"+3247\#(UInt32.random(in: 1_000_000...9_999_999))"}]}"#
            async let first = client.send(.post, "\(base)/surveys/\(survey)/send", headers: headers, body: payload)
            async let second = client.send(.post, "\(base)/surveys/\(survey)/send", headers: headers, body: payload)
            let responses = try await [first, second]
            #expect(responses.map(\.status) == [.accepted, .accepted], "\(responses.map(\.text))")
            #expect(responses.filter { $0.headers[HTTPField.Name("Idempotent-Replayed")!] == "true" }.count == 1)
            #expect(responses[0].text == responses[1].text)
        }
        #expect(try await harness.count("survey_requests", company: tenant.id) == 1)
    }
}
