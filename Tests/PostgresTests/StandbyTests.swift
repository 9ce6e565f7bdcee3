import Foundation
import Postgres
import TestSupport
import Testing

/// Issue 17, failover: what the pool does when a connection reaches a standby (the old
/// primary after a failover, or a URL that names the standby first), against the real
/// primary and hot standby scripts/test starts for the report-replica tests.
@Suite struct StandbyTests {
    struct NotConfigured: Error, CustomStringConvertible {
        var description: String {
            "TEST_REPLICA_PRIMARY_URL and TEST_REPLICA_DATABASE_URL are not set: run the tests with scripts/test"
        }
    }

    /// The socket directory and port of the primary and of the standby.
    static func servers() throws -> (primary: (host: String, port: String), standby: (host: String, port: String)) {
        let environment = ProcessInfo.processInfo.environment
        func server(_ name: String) throws -> (host: String, port: String) {
            guard let url = environment[name].flatMap(URLComponents.init(string:)),
                let host = url.queryItems?.first(where: { $0.name == "host" })?.value,
                let port = url.queryItems?.first(where: { $0.name == "port" })?.value
            else { throw NotConfigured() }
            return (host, port)
        }
        return (try server("TEST_REPLICA_PRIMARY_URL"), try server("TEST_REPLICA_DATABASE_URL"))
    }

    func pool(_ conninfo: String) -> PostgresClient {
        var configuration = PostgresClient.Configuration(connection: .init(url: conninfo, applicationName: "standby-test"))
        configuration.maximumConnections = 2
        return PostgresClient(configuration: configuration, logger: TestDatabase.logger)
    }

    @Test func aWriteThatReachesAStandbyIsNotPrimaryAndItsConnectionsAreDropped() async throws {
        let (_, standby) = try Self.servers()
        let client = pool("host=\(standby.host) port=\(standby.port) user=postgres dbname=postgres")
        // Two connections open to the standby, one idle in the pool.
        try await client.withConnection { first in
            try await client.withConnection { second in
                _ = try await second.query("SELECT 1")
            }
            _ = try await first.query("SELECT 1")
        }
        #expect(client.statistics.idle == 2)
        do {
            try await client.withConnection { connection in
                _ = try await connection.query("CREATE TABLE standby_test_never (id int)")
            }
            Issue.record("a standby accepted a write")
        } catch let error as PostgresError {
            #expect(error.code == .notPrimary, "\(String(reflecting: error))")
            // The layers above answer "try again later" (503), not a server error.
            #expect(error.isUnavailable)
        }
        // Neither that connection nor the idle one is handed out again: the next request
        // finds the server afresh (the new primary, with several hosts in the URL).
        #expect(client.statistics.idle == 0 && client.statistics.leased == 0, "\(client.statistics)")
        await client.shutDown()
    }

    @Test func aMultiHostURLFindsThePrimaryWhicheverHostComesFirst() async throws {
        let (primary, standby) = try Self.servers()
        let client = pool(
            "host=\(standby.host),\(primary.host) port=\(standby.port),\(primary.port) user=postgres dbname=postgres target_session_attrs=read-write")
        let inRecovery = try await client.withConnection { connection in
            try await connection.query("SELECT pg_is_in_recovery()").one().decode(Bool.self)
        }
        #expect(!inRecovery, "target_session_attrs=read-write must skip the standby")
        await client.shutDown()
    }
}
