import Foundation
import Postgres
import TestSupport
import Testing

/// Issue 12: the client's TLS read path (data already decrypted inside OpenSSL, which
/// epoll cannot see) ran in no test. scripts/test starts a cluster that speaks TLS on
/// 127.0.0.1 (`start_private_tls_postgres`) and gives its URL, with sslmode=require.
@Suite struct TLSConnectionTests {
    struct NotConfigured: Error, CustomStringConvertible {
        var description: String { "TEST_TLS_DATABASE_URL is not set: run the tests with scripts/test, which starts a TLS cluster" }
    }

    static func url() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["TEST_TLS_DATABASE_URL"], !url.isEmpty else {
            throw NotConfigured()
        }
        return url
    }

    @Test func queriesPipelinesAndLargeResultsOverTLS() async throws {
        var configuration = PostgresClient.Configuration(connection: .init(url: try Self.url(), applicationName: "tls-test"))
        configuration.maximumConnections = 4
        let client = PostgresClient(configuration: configuration, logger: TestDatabase.logger)
        do {
            let (ssl, version) = try await client.withConnection { connection in
                try await connection.query("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").one()
                    .decode((Bool, String?).self)
            }
            #expect(ssl, "the connection is not encrypted")
            #expect(version?.hasPrefix("TLS") == true)
            // Far more than one TLS record (16 KiB): most of it arrives while OpenSSL already
            // holds decrypted bytes that the socket no longer signals.
            let rows = try await client.withConnection { connection in
                try await connection.query(
                    "SELECT i, repeat(md5(i::text), 8) FROM generate_series(1, 20000) AS i"
                ).map { try $0.decode((Int, String).self) }
            }
            #expect(rows.count == 20000)
            #expect(rows.allSatisfy { $0.1.count == 256 })
            #expect(rows.map(\.0) == Array(1...20000))
            let big = try await client.withConnection { connection in
                try await connection.query("SELECT repeat('x', 4000000)").one().decode(String.self)
            }
            #expect(big.count == 4_000_000)
            // Pipelines and concurrent leases, over TLS.
            let sums = try await withThrowingTaskGroup(of: Int.self) { group in
                for task in 0..<8 {
                    group.addTask {
                        try await client.withConnection { connection in
                            let results = try await connection.pipeline(
                                (0..<20).map { "SELECT \(task * 100 + $0)::int + 0" })
                            return try results.map { try $0.one().decode(Int.self) }.reduce(0, +)
                        }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(sums.sorted() == (0..<8).map { task in (0..<20).map { task * 100 + $0 }.reduce(0, +) })
        } catch {
            await client.shutDown()
            throw error
        }
        await client.shutDown()
    }
}
