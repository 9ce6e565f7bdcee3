import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SurveyStorage

/// Keeps the routing tables honest and small: applies the delivery statuses and replies
/// that arrived before their send was recorded (every `applyInterval`), and purges rows
/// past their retention period in small batches (every `purgeInterval`).
public struct RoutingJanitor: Service {
    public struct Configuration: Sendable {
        public var applyInterval: Duration = .seconds(2)
        public var purgeInterval: Duration = .seconds(3600)
        public var periods = RetentionRepository.Periods()
        /// Rows per purge statement, and statements per table per run: a backlog is worked
        /// off over several runs rather than in one long one.
        public var batchSize = 1000
        public var maximumBatchesPerRun = 100

        public init() {}
    }

    let callbacks: EarlyCallbackRepository
    let retention: RetentionRepository
    let configuration: Configuration
    let logger: Logger

    public init(database: Database, configuration: Configuration = Configuration(), logger: Logger) {
        self.callbacks = EarlyCallbackRepository(database: database)
        self.retention = RetentionRepository(database: database)
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            let clock = ContinuousClock()
            var nextPurge = clock.now
            while !Task.isCancelled {
                await applyEarlyCallbacks()
                if clock.now >= nextPurge {
                    nextPurge = clock.now + configuration.purgeInterval
                    await purge()
                }
                do { try await Task.sleep(for: configuration.applyInterval) } catch { return }
            }
        }
    }

    func applyEarlyCallbacks() async {
        do {
            let applied = try await callbacks.apply()
            if applied.statuses + applied.replies > 0 {
                logger.info(
                    "applied callbacks that arrived before their send was recorded",
                    metadata: ["statuses": "\(applied.statuses)", "replies": "\(applied.replies)"])
                Counter(label: "sms_early_callbacks_applied_total").increment(by: applied.statuses + applied.replies)
            }
        } catch {
            logger.warning("applying early callbacks failed; will retry", metadata: ["error": "\(String(reflecting: error))"])
        }
    }

    /// One purge run over every table; returns how many rows went, by table.
    @discardableResult
    public func purge() async -> [RetentionRepository.Table: Int] {
        var purged: [RetentionRepository.Table: Int] = [:]
        for table in RetentionRepository.Table.allCases {
            var total = 0
            do {
                for _ in 0..<configuration.maximumBatchesPerRun {
                    if Task.isCancelled { break }
                    let count = try await retention.purgeBatch(table, periods: configuration.periods, limit: configuration.batchSize)
                    total += count
                    if count < configuration.batchSize { break }
                }
            } catch {
                logger.warning("purge failed", metadata: ["table": "\(table.rawValue)", "error": "\(String(reflecting: error))"])
            }
            purged[table] = total
            if total > 0 {
                Counter(label: "retention_purged_rows_total", dimensions: [("table", table.rawValue)]).increment(by: total)
            }
        }
        return purged
    }
}
