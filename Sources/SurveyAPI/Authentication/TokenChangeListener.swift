import Logging
import ServiceLifecycle
import SurveyDomain
import SurveyStorage

/// Keeps a `TokenChangeFeed` open (a LISTEN on `api_token_changes`) and tells the
/// `TokenAuthenticator`, which caches tokens only while this listens.
///
/// A connection can die, or stop answering, without the socket saying so. A round trip
/// every `heartbeat` proves it alive, and each proof lets the authenticator trust its
/// cache for two heartbeats from when the round trip began: a listener that hangs (its
/// server paused, a network partition that TCP keepalives take a minute to notice) stops
/// the caching within that, without waiting for its blocked call to fail.
public struct TokenChangeListener: Service {
    let authenticator: TokenAuthenticator
    let database: Database
    let heartbeat: Duration
    let logger: Logger

    public init(
        authenticator: TokenAuthenticator, database: Database, heartbeat: Duration = .seconds(2), logger: Logger
    ) {
        self.authenticator = authenticator
        self.database = database
        self.heartbeat = heartbeat
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await listen()
        }
        authenticator.distrust()
    }

    private func apply(_ changes: [TokenID]) {
        for token in changes { authenticator.invalidate(token) }
    }

    private func listen() async {
        var failures = 0
        while !Task.isCancelled {
            do {
                let clock = ContinuousClock()
                // Counted from before the LISTEN: every announcement since is received.
                var lastBeat = clock.now
                let feed = try await TokenChangeFeed.open(database)
                defer { Task { await feed.close() } }
                authenticator.trust(until: lastBeat + heartbeat * 2)
                if failures > 0 { logger.notice("token change listener is back; caching tokens again") }
                failures = 0
                while !Task.isCancelled {
                    // Wake for the next heartbeat on time: the trust it renews is short.
                    let untilBeat = lastBeat + heartbeat - clock.now
                    apply(try await feed.changes(waitingUpTo: max(.zero, min(.milliseconds(250), untilBeat))))
                    if clock.now - lastBeat >= heartbeat {
                        let beat = clock.now
                        try await feed.heartbeat()
                        // What was announced before the server answered has arrived: applied
                        // before the trust is extended.
                        apply(try await feed.changes(waitingUpTo: .zero))
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
