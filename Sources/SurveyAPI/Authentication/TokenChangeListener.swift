import Logging
import Postgres
import ServiceLifecycle
import SurveyDomain

/// Keeps a LISTEN on `api_token_changes` (announced by a trigger on `api_tokens`) and
/// tells the `TokenAuthenticator`, which caches tokens only while this listens.
///
/// A connection can die without the socket saying so; a round trip every
/// `heartbeat` proves it alive, so a silently lost listener stops the caching within that.
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
        authenticator.setListening(false)
    }

    private func listen() async {
        var failures = 0
        while !Task.isCancelled {
            do {
                let connection = try await client.makeDedicatedConnection()
                defer { Task { await connection.close() } }
                try await connection.listen(Self.channel)
                authenticator.setListening(true)
                if failures > 0 { logger.notice("token change listener is back; caching tokens again") }
                failures = 0
                let clock = ContinuousClock()
                var lastBeat = clock.now
                while !Task.isCancelled {
                    for notification in try await connection.notifications(timeout: .milliseconds(250)) {
                        if let id = Int64(notification.payload) {
                            authenticator.invalidate(TokenID(rawValue: id))
                        }
                    }
                    if clock.now - lastBeat >= heartbeat {
                        try await connection.simpleQuery("SELECT 1")
                        lastBeat = clock.now
                    }
                }
            } catch {
                authenticator.setListening(false)
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
