import Foundation
import Postgres
import SurveyStorage
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 17, bounded waits: `/ready` must answer within its 2 s even when the database
/// stops answering. A real TCP peer that accepts connections and never says a word (as a
/// partitioned server, or one stopped with SIGSTOP, looks to a client) stands in for it.
@Suite struct ReadinessTests {
    @Test(.timeLimit(.minutes(1))) func readyAnswersWithinItsBoundWhenTheDatabaseStopsAnswering() async throws {
        _ = try await TestDatabase.application()  // migrated
        let (socketPath, name) = try NetworkFaults.testDatabaseSocket()
        let proxy = try FreezingProxy(unixSocket: socketPath)
        var configuration = PostgresClient.Configuration(
            connection: .init(url: "postgresql://postgres@127.0.0.1:\(proxy.port)/\(name)?connect_timeout=5", applicationName: "ready-test"))
        configuration.maximumConnections = 1
        let database = Database(client: PostgresClient(configuration: configuration, logger: TestDatabase.logger))
        let migrator = try Migrator(directory: TestDatabase.sqlDirectory)
        #expect(await database.readiness(migrator: migrator, timeout: .seconds(5)).isReady, "through the proxy, before the partition")
        // The partition: the pooled connection's next statement gets no answer, ever.
        proxy.freeze()
        let started = ContinuousClock.now
        let readiness = await database.readiness(migrator: migrator, timeout: .seconds(1))
        let took = started.duration(to: .now)
        #expect(!readiness.isReady)
        #expect(took < .seconds(2), "/ready (its production bound: 2 s) waited \(took) for a database that stopped answering")
        // The partition heals by closing: the stranded statement fails, the pool can go.
        proxy.stop()
        await database.client.shutDown()
    }

    @Test(.timeLimit(.minutes(1))) func readyAnswersWithinItsBoundWhenTheDatabaseIsSilent() async throws {
        let server = try SilentServer()
        // libpq would wait for the server's answer up to its connect timeout (5 s here):
        // longer than a probe may.
        var configuration = PostgresClient.Configuration(
            connection: .init(url: "postgresql://postgres@127.0.0.1:\(server.port)/surveyd?connect_timeout=5", applicationName: "ready-test"))
        configuration.maximumConnections = 1
        let database = Database(client: PostgresClient(configuration: configuration, logger: TestDatabase.logger))
        let started = ContinuousClock.now
        let readiness = await database.readiness(migrator: try Migrator(directory: TestDatabase.sqlDirectory), timeout: .seconds(1))
        let took = started.duration(to: .now)
        #expect(!readiness.isReady && !readiness.databaseReachable)
        #expect(took < .seconds(2), "/ready (its production bound: 2 s) waited \(took) for a silent database")
        await database.client.shutDown()
        server.stop()
    }
}
