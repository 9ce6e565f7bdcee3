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
        /// Pages per statement of a table swept by pages (`open_surveys`): 1 MiB, about
        /// 4,000 slots at the table's fill factor, each range its own short statement.
        public var sweepPages = 128

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
                total = try await RetentionRepository.access(of: table) == .sweep ? sweep(table) : purgeInBatches(table)
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

    /// Batches of old rows found through the table's index, a bounded number per run: a
    /// backlog is worked off over several runs rather than in one long one.
    func purgeInBatches(_ table: RetentionRepository.Table) async throws -> Int {
        var total = 0
        for _ in 0..<configuration.maximumBatchesPerRun {
            if Task.isCancelled { break }
            let count = try await retention.purgeBatch(table, periods: configuration.periods, limit: configuration.batchSize)
            total += count
            if count < configuration.batchSize { break }
        }
        return total
    }

    /// The whole table by ranges of pages: it holds one row per number with a survey open
    /// or lately open, and a range with nothing to delete costs one read of its pages.
    func sweep(_ table: RetentionRepository.Table) async throws -> Int {
        var total = 0
        var page: Int? = 0
        while let first = page, !Task.isCancelled {
            let swept = try await retention.sweepPages(table, periods: configuration.periods, from: first, pages: configuration.sweepPages)
            total += swept.deleted
            page = swept.next
        }
        return total
    }
}
