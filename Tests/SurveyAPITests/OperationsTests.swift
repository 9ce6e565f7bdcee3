import APITestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Metrics
import NIOCore
import Postgres
import Prometheus
import SurveyAPI
import SurveyDomain
import SurveyStorage
import Telemetry
import TestSupport
import Testing

/// `/health`, `/ready`, `/metrics`, request ids, and 503 when the pool is exhausted.
@Suite struct OperationsTests {
    let harness: Harness
    init() async throws { harness = try await Harness() }

    /// The process's one metrics registry: swift-metrics is bootstrapped once per process.
    static let metrics: PrometheusMetrics = PrometheusMetrics.bootstrap()

    func application(database: Database? = nil, migrator: Migrator? = nil) throws -> some ApplicationProtocol {
        var configuration = Harness.configuration()
        // These tests are about what the check finds, not how fast: a loaded test machine
        // took longer than the 2-second bound a probe gets, and the answer was "unreachable".
        configuration.operations = .init(
            migrator: try migrator ?? Migrator(directory: TestDatabase.sqlDirectory), metrics: Self.metrics.exposition,
            openAPI: try OpenAPIDocument(contentsOf: Self.openAPIPath), readinessTimeout: .seconds(30))
        return Application(router: buildRouter(configuration: configuration, database: database ?? harness.database))
    }

    static let openAPIPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("openapi.yaml").path

    @Test func theContractIsServedAsYAMLAndJSON() async throws {
        try await application().testContract { client in
            let yaml = try await client.send(.get, "/openapi.yaml")
            #expect(yaml.status == .ok)
            #expect(yaml.text == (try String(contentsOfFile: Self.openAPIPath, encoding: .utf8)))
            let json = try await client.send(.get, "/openapi.json")
            #expect(json.headers[.contentType] == "application/json; charset=utf-8")
            #expect(json.object["openapi"] as? String == "3.1.0")
            let paths = try #require(json.object["paths"] as? [String: Any])
            #expect(paths["/survey/1.0.0/surveys/{id}/send"] != nil)
            // `responses` keys are numbers in YAML; JSON has them as strings.
            let get = (paths["/health"] as? [String: Any])?["get"] as? [String: Any]
            #expect((get?["responses"] as? [String: Any])?["200"] != nil)
        }
    }

    @Test func healthAndReadinessNeedNoToken() async throws {
        try await application().testContract { client in
            let health = try await client.send(.get, "/health")
            #expect(health.status == .ok)
            #expect(health.text == #"{"status":"ok"}"#)
            let ready = try await client.send(.get, "/ready")
            #expect(ready.status == .ok, "\(ready.text)")
            #expect(ready.text == #"{"status":"ready"}"#)
        }
    }

    @Test func notReadyWhenAMigrationIsMissing() async throws {
        let known = try Migrator(directory: TestDatabase.sqlDirectory).migrations
        let ahead = try Migrator(migrations: known + [.init(version: 9_999, name: "9999_future.sql", sql: "SELECT 1")])
        try await application(migrator: ahead).testContract { client in
            let response = try await client.send(.get, "/ready")
            response.expectProblem(.serviceUnavailable)
            #expect(response.object["detail"] as? String == "The database schema is behind this build: run `surveyd migrate`.")
            #expect(response.headers[.retryAfter] == "5")
            // Liveness does not depend on it.
            #expect(try await client.send(.get, "/health").status == .ok)
        }
    }

    @Test func notReadyWhenTheDatabaseIsUnreachable() async throws {
        let unreachable = Database(client: Database.applicationPool(
            url: "postgresql://nobody@/none?host=/nonexistent-surveyd-socket&connect_timeout=1",
            applicationName: "surveyd-serve", maximumConnections: 2, logger: TestDatabase.logger))
        try await application(database: unreachable).testContract { client in
            let start = ContinuousClock.now
            let response = try await client.send(.get, "/ready")
            response.expectProblem(.serviceUnavailable)
            #expect(response.object["detail"] as? String == "The database is unreachable.")
            #expect(ContinuousClock.now - start < .seconds(3))
            #expect(try await client.send(.get, "/health").status == .ok)
        }
        await unreachable.client.shutDown()
    }

    /// A connection that sends nothing is closed after the idle timeout, not held open.
    @Test func idleConnectionsAreClosed() async throws {
        var configuration = Harness.configuration()
        configuration.limits.idleTimeout = .milliseconds(300)
        // A pool of its own: the application runs it as a service and shuts it down at the end.
        let database = Database(client: Database.applicationPool(
            url: try TestDatabase.url(), applicationName: "idle-timeout-test", maximumConnections: 2, logger: TestDatabase.logger))
        let application = buildApplication(configuration: configuration, database: database, logger: TestDatabase.logger)
        try await application.test(.live) { client in
            let port = try #require(client.port)
            let (_, closed) = try await RawConnection.open(port: port).readUntilClosed(timeout: .seconds(10))
            #expect(closed, "the server kept an idle connection open for 10 s")
        }
    }

    @Test func metricsCountRequestsByRouteTemplateNeverByTenant() async throws {
        let tenant = try await harness.company()
        _ = Self.metrics
        try await application().testContract { client in
            let survey = try await client.createSurvey(for: tenant)
            #expect(try await client.send(.get, "\(base)/surveys/\(survey)", headers: tenant.headers).status == .ok)
            let metrics = try await client.send(.get, "/metrics")
            #expect(metrics.status == .ok)
            #expect(metrics.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
            let text = metrics.text
            #expect(text.contains(#"http_route="/survey/1.0.0/surveys/{id}""#), "\(text.prefix(2000))")
            #expect(text.contains("http_server_request_duration_bucket"))
            #expect(text.contains("postgres_pool_connections_in_use") || text.contains("http_server_requests_total"))
            #expect(!text.contains("/surveys/\(survey)\""), "an id as a label")
            #expect(!text.contains(tenant.token))
            #expect(!text.contains("company"), "a tenant as a label")
        }
    }

    /// Issue 12: a response with a token or tenant data must not be kept by a cache.
    @Test func responsesAreNotStoredByCaches() async throws {
        let tenant = try await harness.company()
        try await application().testContract { client in
            let survey = try await client.createSurvey(for: tenant)
            for response in [
                try await client.send(.get, "\(base)/surveys", headers: tenant.headers),
                try await client.send(.get, "\(base)/surveys/\(survey)", headers: tenant.headers),
                try await client.send(.get, "\(base)/report", headers: tenant.headers),
                try await client.send(.get, "\(base)/surveys/999999999", headers: tenant.headers),
                try await client.send(.get, "\(base)/surveys"),
                try await client.send(.get, "/nowhere"),
                try await client.send(.get, "/metrics"),
            ] {
                #expect(response.headers[.cacheControl] == "no-store", "\(response.status)")
            }
            // The contract is the same for everyone: it may be cached.
            #expect(try await client.send(.get, "/openapi.yaml").headers[.cacheControl] == "public, max-age=300")
        }
    }

    /// Issue 12: `http_server_request_errors_total` stayed at zero, since errors become
    /// responses before Hummingbird's metrics middleware sees them.
    @Test func serverErrorsAreCounted() async throws {
        _ = Self.metrics
        let unreachable = Database(client: Database.applicationPool(
            url: "postgresql://nobody@/none?host=/nonexistent-surveyd-socket&connect_timeout=1",
            applicationName: "surveyd-serve", maximumConnections: 2, logger: TestDatabase.logger))
        @Sendable func count(_ text: String, route: String = "/ready", status: String = "503") -> Double {
            text.split(separator: "\n").filter {
                $0.hasPrefix("http_server_request_errors_total{") && $0.contains(#"http_route="\#(route)""#)
                    && $0.contains(#"error_type="\#(status)""#)
            }.compactMap { Double($0.split(separator: " ").last ?? "") }.reduce(0, +)
        }
        try await application(database: unreachable).testContract { client in
            let before = count(try await client.send(.get, "/metrics").text)
            #expect(try await client.send(.get, "/ready").status == .serviceUnavailable)
            #expect(try await client.send(.get, "/ready").status == .serviceUnavailable)
            // Client errors are not the server's.
            #expect(try await client.send(.get, "/nowhere").status == .notFound)
            let text = try await client.send(.get, "/metrics").text
            // At least: another test of this suite may ask /ready of an unreachable database too.
            #expect(count(text) >= before + 2, "\(text.split(separator: "\n").filter { $0.contains("errors") })")
            #expect(count(text, route: "NotFound", status: "404") == 0)
        }
        await unreachable.client.shutDown()
    }

    @Test func everyResponseCarriesARequestID() async throws {
        let tenant = try await harness.company()
        try await application().testContract { client in
            let given = try await client.send(
                .get, "\(base)/surveys", headers: [.authorization: tenant.headers[.authorization]!, HTTPField.Name("X-Request-Id")!: "trace-1234:abc/def"])
            #expect(given.headers[HTTPField.Name("X-Request-Id")!] == "trace-1234:abc/def")
            let made = try await client.send(.get, "\(base)/surveys", headers: tenant.headers)
            let id = try #require(made.headers[HTTPField.Name("X-Request-Id")!])
            #expect(id.count == 32 && id.allSatisfy(\.isHexDigit))
            let another = try await client.send(.get, "\(base)/surveys", headers: tenant.headers).headers[HTTPField.Name("X-Request-Id")!]
            #expect(another != id)
            for bad in ["has space", String(repeating: "a", count: 129), "quote\"", "new\u{1}line"] {
                let response = try await client.send(.get, "/health", headers: [HTTPField.Name("X-Request-Id")!: bad])
                let echoed = try #require(response.headers[HTTPField.Name("X-Request-Id")!])
                #expect(echoed != bad && echoed.count == 32)
            }
            for response in [
                try await client.send(.get, "\(base)/surveys"),
                try await client.send(.get, "/nowhere"),
                try await client.send(.delete, "\(base)/report", headers: tenant.headers),
            ] {
                #expect(response.status.code >= 400)
                #expect(response.headers[HTTPField.Name("X-Request-Id")!]?.count == 32, "\(response.status)")
            }
        }
    }

    @Test func anExhaustedPoolAnswers503AtOnce() async throws {
        let tenant = try await harness.company()
        let client = Database.applicationPool(
            url: try TestDatabase.url(), applicationName: "surveyd-serve", maximumConnections: 1, maximumWaiters: 1,
            waitTimeout: .seconds(3), logger: TestDatabase.logger)
        let database = Database(client: client)
        // Open the one connection first: connecting is not what this test measures.
        try await client.withConnection { try await $0.simpleQuery("SELECT 1") }
        let held = AsyncStream<Bool>.makeStream()
        let release = AsyncStream<Void>.makeStream()
        // Take the one connection and keep it. The stream ends either way, so a failure
        // here fails the test instead of hanging it.
        let holder = Task {
            defer { held.continuation.finish() }
            try await client.withConnection { _ in
                held.continuation.yield(true)
                for await _ in release.stream { break }
            }
        }
        var holding = false
        for await value in held.stream {
            holding = value
            break
        }
        if !holding {
            try await holder.value
            Issue.record("the holder could not take the connection")
            return
        }
        try await application(database: database).testContract { api in
            let statuses = try await withThrowingTaskGroup(of: (Int, Duration, String?).self) { group in
                for _ in 0..<3 {
                    group.addTask {
                        let start = ContinuousClock.now
                        let response = try await api.send(.get, "\(base)/surveys", headers: tenant.headers)
                        return (Int(response.status.code), ContinuousClock.now - start, response.headers[.retryAfter])
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.allSatisfy { $0.0 == 503 && $0.2 != nil }, "\(statuses)")
            // One may wait (the queue holds one) until the 3 s wait timeout; the others are
            // refused without waiting.
            #expect(statuses.filter { $0.1 < .milliseconds(1500) }.count >= 2, "past the bounded queue, refused at once: \(statuses)")
            #expect(statuses.allSatisfy { $0.1 < .seconds(6) }, "none waited without end: \(statuses)")
            release.continuation.yield()
            try await holder.value
            #expect(try await api.send(.get, "\(base)/surveys", headers: tenant.headers).status == .ok)
        }
        await client.shutDown()
    }
}
