import APITestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Postgres
import SurveyAPI
import SurveyStorage
import TestSupport
import Testing

/// An operator (or a failover) kills the pool's backends with `pg_terminate_backend`: the
/// next requests still succeed, on new connections, without a single 5xx.
@Suite struct BackendTerminationTests {
    @Test func requestsAfterTerminatedBackendsSucceed() async throws {
        let harness = try await Harness()
        let tenant = try await harness.company()
        let name = "surveyd-terminate-\(UInt32.random(in: 0...UInt32.max))"
        let database = Database(client: Database.applicationPool(
            url: try TestDatabase.url(), applicationName: name, maximumConnections: 4, logger: TestDatabase.logger))
        let application = Application(router: buildRouter(configuration: Harness.configuration(), database: database))
        try await application.testContract { client in
            // Fill the pool with idle connections.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        let response = try await client.send(.get, "\(base)/surveys", headers: tenant.headers)
                        #expect(response.status == .ok)
                    }
                }
                try await group.waitForAll()
            }
            for round in 0..<3 {
                let killed = try await harness.superuser().withConnection { connection in
                    try await connection.query(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int FROM pg_stat_activity WHERE application_name = \(name)"
                    ).one().decode(Int.self)
                }
                #expect(killed > 0, "round \(round): nothing to kill")
                let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<8 {
                        group.addTask {
                            Int(try await client.send(.get, "\(base)/surveys", headers: tenant.headers).status.code)
                        }
                    }
                    return try await group.reduce(into: [Int]()) { $0.append($1) }
                }
                #expect(statuses.allSatisfy { $0 == 200 }, "round \(round): \(statuses)")
            }
        }
        await database.client.shutDown()
    }
}
