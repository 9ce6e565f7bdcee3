import Foundation
import Logging
import Postgres
import ServiceLifecycle
import SurveyAPI
import SurveyDomain
import SurveyStorage
import TestSupport
import Testing

/// Tokens are cached per replica, and a revocation anywhere stops them at once everywhere:
/// the cache is trusted only while its LISTEN connection is alive.
@Suite struct TokenCacheTests {
    let harness: Harness
    init() async throws { harness = try await Harness() }

    /// A replica's authenticator with its listener running, on a pool of its own (so the test
    /// can find and kill the listener's backend by its application name).
    func withListeningAuthenticator(
        _ body: @Sendable (TokenAuthenticator, String) async throws -> Void
    ) async throws {
        let name = "token-cache-test-\(UInt32.random(in: 0...UInt32.max))"
        let client = Database.applicationPool(url: try TestDatabase.url(), applicationName: name, logger: TestDatabase.logger)
        let database = Database(client: client)
        let authenticator = TokenAuthenticator(companies: CompanyRepository(database: database))
        let listener = TokenChangeListener(
            authenticator: authenticator, database: database, heartbeat: .milliseconds(200), logger: TestDatabase.logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await listener.run() }
            defer { group.cancelAll() }
            try await body(authenticator, name)
        }
        await client.shutDown()
    }

    /// Polls `condition` for up to `limit`; returns how long it took to hold.
    func waitFor(_ limit: Duration = .seconds(5), _ condition: () async throws -> Bool) async throws -> Duration? {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < limit {
            if try await condition() { return ContinuousClock.now - start }
            try await Task.sleep(for: .milliseconds(5))
        }
        return nil
    }

    /// Presents `token` until the authenticator holds it in its cache; how long that took.
    func cached(_ token: APIToken, by authenticator: TokenAuthenticator) async throws -> Duration? {
        try await waitFor {
            _ = try await authenticator.identity(of: token)
            return authenticator.isKnown(token)
        }
    }

    @Test func aRevokedTokenStopsWorkingAtOnce() async throws {
        let tenant = try await harness.company()
        let token = APIToken(secret: tenant.token)
        try await withListeningAuthenticator { authenticator, _ in
            #expect(try await cached(token, by: authenticator) != nil, "the token is cached once the listener runs")
            #expect(try await authenticator.identity(of: token)?.company == tenant.id)

            // Revoked through the other path a replica would take: its own pool.
            try await CompanyRepository(database: harness.database).revokeToken(tenant.tokenID, company: tenant.id)
            let refused = try await waitFor(.seconds(2)) { try await authenticator.identity(of: token) == nil }
            let elapsed = try #require(refused, "the revoked token was still accepted after 2 s")
            #expect(elapsed < .milliseconds(500), "revocation took \(elapsed)")
            #expect(!authenticator.isKnown(token))
        }
    }

    /// A listener whose server stops answering (paused here with SIGSTOP; a network
    /// partition looks the same) is blocked in its heartbeat, not failed: the cache's trust
    /// must lapse by itself, so a revocation is seen at once instead of after the entry's
    /// lifetime or TCP keepalives' minute.
    @Test func aListenerThatStopsAnsweringStopsTheCaching() async throws {
        let tenant = try await harness.company()
        let token = APIToken(secret: tenant.token)
        try await withListeningAuthenticator { authenticator, name in
            #expect(try await cached(token, by: authenticator) != nil)
            let backend = try await harness.superuser().withConnection { connection in
                try await connection.query(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = \(name) AND (query ILIKE 'LISTEN%' OR query = 'SELECT 1')"
                ).one().decode(Int32.self)
            }
            guard kill(backend, SIGSTOP) == 0 else {
                Issue.record("cannot pause the listener's backend (pid \(backend)): run the tests as root or as postgres")
                return
            }
            defer { kill(backend, SIGCONT) }
            try await CompanyRepository(database: harness.database).revokeToken(tenant.tokenID, company: tenant.id)
            let refused = try await waitFor(.seconds(3)) { try await authenticator.identity(of: token) == nil }
            let elapsed = try #require(refused, "a revoked token was served from the cache of a listener that hangs")
            // Two heartbeats of 200 ms at most; the margin is for a busy machine. Before the
            // lease, the answer was the entry's 60 s.
            #expect(elapsed < .seconds(2), "the cache stopped being trusted after \(elapsed)")
        }
    }

    @Test func losingTheListenerStopsTheCaching() async throws {
        let tenant = try await harness.company()
        let token = APIToken(secret: tenant.token)
        try await withListeningAuthenticator { authenticator, name in
            #expect(try await cached(token, by: authenticator) != nil)
            // Kill the listener's backend: the cache must be dropped, not trusted blindly.
            try await harness.superuser().withConnection { connection in
                _ = try await connection.query(
                    """
                    SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE application_name = \(name) AND query ILIKE 'LISTEN%' OR (application_name = \(name) AND query = 'SELECT 1')
                    """)
            }
            #expect(try await waitFor(.seconds(3)) { !authenticator.isKnown(token) } != nil)
            // While the listener is down a revocation cannot be missed: it is looked up each time;
            // once it is back, caching resumes.
            #expect(try await waitFor(.seconds(10)) {
                _ = try await authenticator.identity(of: token)
                return authenticator.isKnown(token)
            } != nil, "caching resumed after the listener reconnected")
            try await CompanyRepository(database: harness.database).revokeToken(tenant.tokenID, company: tenant.id)
            #expect(try await waitFor(.seconds(2)) { try await authenticator.identity(of: token) == nil } != nil)
        }
    }
}
