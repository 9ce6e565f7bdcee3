import APITestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Postgres
import SurveyAPI
import SurveyDomain
import SurveyStorage
import TestSupport
import Testing

/// Issue 17: a request whose database stops answering (a partition: the proxy between
/// them freezes, closing nothing) is answered 503 with `Retry-After` within its deadline,
/// not left hanging until TCP gives up.
@Suite(.timeLimit(.minutes(1))) struct SilentDatabaseTests {
    @Test func aRequestWhoseDatabaseStopsAnsweringGets503WithinItsDeadline() async throws {
        let scratch = try #require(URLComponents(string: try await TestDatabase.migratedScratchDatabase("silent")))
        let proxy = try FreezingProxy(unixSocket: NetworkFaults.testDatabaseSocket().path)
        defer { proxy.stop() }
        let database = Database(client: Database.applicationPool(
            url: "postgresql://postgres@127.0.0.1:\(proxy.port)\(scratch.path)", applicationName: "silent-test",
            maximumConnections: 2, logger: TestDatabase.logger))
        let (_, _, token) = try await CompanyRepository(database: database).create(name: "Silent", settings: .alwaysOpen)
        var configuration = Harness.configuration()
        configuration.limits.requestTimeout = .seconds(1)
        let application = Application(router: buildRouter(configuration: configuration, database: database))
        try await application.testContract { client in
            let headers: HTTPFields = [.authorization: "Bearer \(token.secret)"]
            // Served while the database answers: on a loaded machine the first tries, which
            // open connections through the proxy, can miss the 1 s deadline.
            var status = HTTPResponse.Status.serviceUnavailable
            for _ in 0..<10 where status != .ok {
                status = try await client.send(.get, "\(base)/surveys", headers: headers).status
            }
            #expect(status == .ok)
            proxy.freeze()
            let started = ContinuousClock.now
            let response = try await client.send(.get, "\(base)/surveys", headers: headers)
            let took = started.duration(to: .now)
            response.expectProblem(.serviceUnavailable)
            #expect(response.headers[.retryAfter] != nil)
            #expect(took < .milliseconds(1800), "answered after \(took), for a 1 s deadline")
        }
        await database.client.shutDown()
    }
}
