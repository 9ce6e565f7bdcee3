import Logging
import ServiceLifecycle
import SurveyStorage

/// Forgets idle rate-limit keys, in this replica's memory and in the shared table.
/// Any replica may purge the table: a bucket idle for `tableAge` would be full anyway.
public struct RateLimitJanitor: Service {
    let limiter: SharedRateLimiter<ContinuousClock>
    let repository: RateLimitRepository
    let tableAge: Duration
    let logger: Logger

    public init(limiter: SharedRateLimiter<ContinuousClock>, repository: RateLimitRepository, tableAge: Duration = .seconds(600), logger: Logger) {
        self.limiter = limiter
        self.repository = repository
        self.tableAge = tableAge
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await loop() }
    }

    private func loop() async {
        var round = 0
        while !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(10)) } catch { return }
            limiter.evictIdle()
            round += 1
            if round % 6 == 0 {
                do {
                    try await repository.purge(olderThan: tableAge)
                } catch {
                    logger.debug("could not purge idle rate limit buckets", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
