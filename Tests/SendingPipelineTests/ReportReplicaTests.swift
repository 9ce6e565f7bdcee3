import APITestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Postgres
import SurveyAPI
import SurveyDomain
import SurveyStorage
import TestSupport
import Testing

/// Issue 17, reports from a replica: a real streaming standby (`start_private_replica_postgres`
/// in scripts/test: a primary of its own and a `pg_basebackup` of it). The reports read the
/// standby while it is fresh, say how fresh (`Data-As-Of`), and go to the primary when it
/// lags past the bound or does not answer.
@Suite struct ReportReplicaTests {
    struct NotConfigured: Error, CustomStringConvertible {
        var description: String {
            "TEST_REPLICA_PRIMARY_URL and TEST_REPLICA_DATABASE_URL are not set: run the tests with scripts/test, which starts a primary and its standby"
        }
    }

    /// The primary's and the standby's URL of `database`.
    static func urls(database: String) throws -> (primary: String, replica: String) {
        let environment = ProcessInfo.processInfo.environment
        guard let primary = environment["TEST_REPLICA_PRIMARY_URL"], let replica = environment["TEST_REPLICA_DATABASE_URL"],
            var primaryURL = URLComponents(string: primary), var replicaURL = URLComponents(string: replica)
        else { throw NotConfigured() }
        primaryURL.path = "/" + database
        replicaURL.path = "/" + database
        return (primaryURL.string!, replicaURL.string!)
    }

    static func superuser(_ url: String) -> PostgresClient {
        var configuration = PostgresClient.Configuration(connection: .init(url: url, applicationName: "tests-replica"))
        configuration.maximumConnections = 1
        return PostgresClient(configuration: configuration, logger: TestDatabase.logger)
    }

    struct NotReplayed: Error, CustomStringConvertible {
        var description: String { "the standby did not replay the new database within 20 s" }
    }

    /// A migrated database on the primary, once the standby has it too.
    static func database() async throws -> (primary: String, replica: String) {
        let name = "replica_reports_\(UInt32.random(in: 0...UInt32.max))"
        let (maintenance, standby) = try urls(database: "postgres")
        // The standby outlives test runs: one that ended while replay was paused (killed)
        // left it paused.
        let standbyAdmin = superuser(standby)
        try await standbyAdmin.withConnection { try await $0.simpleQuery("SELECT pg_wal_replay_resume()") }
        await standbyAdmin.shutDown()
        let admin = superuser(maintenance)
        try await admin.withConnection { try await $0.simpleQuery("CREATE DATABASE \(name)") }
        await admin.shutDown()
        let urls = try urls(database: name)
        let connection = try await TestDatabase.connect(url: urls.primary, applicationName: "surveyd-migrate")
        try await Migrator(directory: TestDatabase.sqlDirectory).migrate(on: connection, logger: TestDatabase.logger)
        await connection.close()
        // Replayed within moments: wait for the last migration to be there.
        let replica = superuser(urls.replica)
        defer { Task { await replica.shutDown() } }
        let expected = try await migrationsApplied(urls.primary)
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let count = try? await replica.withConnection({
                try await $0.query("SELECT count(*)::int FROM schema_migrations").one().decode(Int.self)
            }), count == expected {
                return urls
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw NotReplayed()
    }

    static func migrationsApplied(_ url: String) async throws -> Int {
        let client = superuser(url)
        defer { Task { await client.shutDown() } }
        return try await client.withConnection { try await $0.query("SELECT count(*)::int FROM schema_migrations").one().decode(Int.self) }
    }

    static func pool(_ url: String, _ name: String) -> Database {
        Database(client: Database.applicationPool(url: url, applicationName: name, maximumConnections: 4, logger: TestDatabase.logger))
    }

    /// The API as `serve` builds it, its reports reading `replica` with `maximumLag`.
    static func api<Value: Sendable>(
        primary: Database, replica: Database, maximumLag: Duration,
        _ body: @Sendable (any TestClientProtocol) async throws -> Value
    ) async throws -> Value {
        var configuration = APIConfiguration(
            destinationHasher: Pipeline.hasher,
            limits: .init(
                perToken: RateLimit(ratePerSecond: 1_000_000, burst: 1_000_000),
                perCompany: RateLimit(ratePerSecond: 1_000_000, burst: 1_000_000)))
        configuration.reportsReplica = .init(database: replica, maximumLag: maximumLag)
        return try await Application(
            router: buildRouter(
                configuration: configuration, database: primary, components: APIComponents(database: primary, logger: TestDatabase.logger)),
            logger: TestDatabase.logger
        ).testContract { client in try await body(client) }
    }

    static func requests(_ response: TestResponse) throws -> Int {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any])
        return try #require((object["responseStatistics"] as? [String: Any])?["totalRequests"] as? Int)
    }

    static func asOf(_ response: TestResponse) throws -> Date {
        try #require(response.headers[HTTPField.Name("Data-As-Of")!].flatMap(Timestamp.parseInstant))
    }

    @Test func reportsReadTheStandbyWhileItIsFreshElseThePrimary() async throws {
        let urls = try await Self.database()
        let primary = Self.pool(urls.primary, "surveyd-serve")
        let replica = Self.pool(urls.replica, "surveyd-serve-reports")
        var nowhere = try #require(URLComponents(string: urls.replica))
        nowhere.queryItems = nowhere.queryItems?.map { $0.name == "host" ? URLQueryItem(name: "host", value: "/nonexistent-replica-socket") : $0 }
        let unreachable = Self.pool(try #require(nowhere.string), "surveyd-serve-reports")
        let standby = Self.superuser(urls.replica)
        let (company, _, token) = try await CompanyRepository(database: primary).create(name: "Replica company", settings: .alwaysOpen)
        _ = company
        let headers: HTTPFields = [.authorization: "Bearer \(token.secret)", .contentType: "application/json"]
        @Sendable func send(_ client: any TestClientProtocol, survey: Int, to number: String) async throws {
            let sent = try await client.execute(
                uri: "/survey/1.0.0/surveys/\(survey)/send", method: .post, headers: headers,
                body: ByteBuffer(string: #"{"requests":[{"channel":"SMS","destination":"\#(number)"}]}"#))
            #expect(sent.status == .accepted)
        }
        do {
            let survey = try await Self.api(primary: primary, replica: replica, maximumLag: .seconds(30)) { client in
                let created = try await client.execute(
                    uri: "/survey/1.0.0/surveys", method: .post, headers: headers,
                    body: ByteBuffer(string: #"{"name":"r","interactionType":"t","questions":[{"body":"0-10?","language":"en"}]}"#))
                let survey = try #require(
                    (try JSONSerialization.jsonObject(with: Data(created.body.readableBytesView)) as? [String: Any])?["id"] as? Int)
                try await send(client, survey: survey, to: phone())
                // Replayed on the standby a moment later; the standby is current, so its data is as of now.
                let deadline = ContinuousClock.now + .seconds(10)
                var report = try await client.execute(uri: "/survey/1.0.0/report", method: .get, headers: headers)
                while try Self.requests(report) < 1, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                    report = try await client.execute(uri: "/survey/1.0.0/report", method: .get, headers: headers)
                }
                #expect(try Self.requests(report) == 1)
                #expect(abs(try Self.asOf(report).timeIntervalSinceNow) < 5)

                // Replay paused: a second send is on the primary only. Within the bound, the
                // report is the standby's, one request, as of before the pause.
                try await standby.withConnection { try await $0.simpleQuery("SELECT pg_wal_replay_pause()") }
                try await send(client, survey: survey, to: phone())
                try await Task.sleep(for: .milliseconds(1500))
                let stale = try await client.execute(uri: "/survey/1.0.0/report", method: .get, headers: headers)
                #expect(try Self.requests(stale) == 1, "the standby answered")
                #expect(try Self.asOf(stale).timeIntervalSinceNow < -1, "as of its last replayed commit")
                return survey
            }
            _ = survey
            // Past a bound of one second: the primary answers, both requests, as of now.
            try await Self.api(primary: primary, replica: replica, maximumLag: .seconds(1)) { client in
                let fresh = try await client.execute(uri: "/survey/1.0.0/report", method: .get, headers: headers)
                #expect(try Self.requests(fresh) == 2, "the primary answered")
                #expect(abs(try Self.asOf(fresh).timeIntervalSinceNow) < 5)
            }
            // A standby that does not answer: the primary, without an error.
            try await Self.api(primary: primary, replica: unreachable, maximumLag: .seconds(30)) { client in
                let report = try await client.execute(uri: "/survey/1.0.0/report", method: .get, headers: headers)
                #expect(report.status == .ok)
                #expect(try Self.requests(report) == 2)
            }
        } catch {
            try? await standby.withConnection { try await $0.simpleQuery("SELECT pg_wal_replay_resume()") }
            await primary.client.shutDown()
            await replica.client.shutDown()
            await unreachable.client.shutDown()
            await standby.shutDown()
            throw error
        }
        try await standby.withConnection { try await $0.simpleQuery("SELECT pg_wal_replay_resume()") }
        await primary.client.shutDown()
        await replica.client.shutDown()
        await unreachable.client.shutDown()
        await standby.shutDown()
    }
}
