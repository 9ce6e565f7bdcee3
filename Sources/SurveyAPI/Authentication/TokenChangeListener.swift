import Logging
import Postgres
import ServiceLifecycle
import SurveyDomain

/// Keeps a LISTEN on `api_token_changes` (announced by a trigger on `api_tokens`) and
/// tells the `TokenAuthenticator`, which caches tokens only while this listens.
///
/// A connection can die, or stop answering, without the socket saying so. A round trip
/// every `heartbeat` proves it alive, and each proof lets the authenticator trust its
/// cache for two heartbeats from when the round trip began: a listener that hangs (its
/// server paused, a network partition that TCP keepalives take a minute to notice) stops
/// the caching within that, without waiting for its blocked call to fail.
public struct TokenChangeListener: Service {
    public static let channel = "api_token_changes"

    let authenticator: TokenAuthenticator
    let client: PostgresClient
    let heartbeat: Duration
    let logger: Logger

    public init(
        authenticator: TokenAuthenticator, client: PostgresClient, heartbeat: Duration = .seconds(2), logger: Logger
    ) {
        self.authenticator = authenticator
        self.client = client
        self.heartbeat = heartbeat
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await listen()
        }
        authenticator.distrust()
    }

    private func apply(_ notifications: [PostgresNotification]) {
        for notification in notifications {
            if let id = Int64(notification.payload) {
                authenticator.invalidate(TokenID(rawValue: id))
            }
        }
    }

    private func listen() async {
        var failures = 0
        while !Task.isCancelled {
            do {
                let connection = try await client.makeDedicatedConnection()
                defer { Task { await connection.close() } }
                let clock = ContinuousClock()
                var lastBeat = clock.now
                // LISTEN takes effect at once: every announcement from now on is received.
                try await connection.listen(Self.channel)
                authenticator.trust(until: lastBeat + heartbeat * 2)
                if failures > 0 { logger.notice("token change listener is back; caching tokens again") }
                failures = 0
                while !Task.isCancelled {
                    // Wake for the next heartbeat on time: the trust it renews is short.
                    let untilBeat = lastBeat + heartbeat - clock.now
                    apply(try await connection.notifications(timeout: max(.zero, min(.milliseconds(250), untilBeat))))
                    if clock.now - lastBeat >= heartbeat {
                        let beat = clock.now
                        try await connection.simpleQuery("SELECT 1")
                        // Announcements sent before the server answered arrived before the
                        // answer (one ordered stream): applied before the trust is extended.
                        apply(try await connection.notifications(timeout: .zero))
                        authenticator.trust(until: beat + heartbeat * 2)
                        lastBeat = beat
                    }
                }
            } catch {
                authenticator.distrust()
                if Task.isCancelled { return }
                failures += 1
                if failures == 1 {
                    logger.warning(
                        "token change listener lost; every request checks its token in the database until it is back",
                        metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .milliseconds(min(5000, 250 * (1 << min(failures, 5)))))
            }
        }
    }
}
