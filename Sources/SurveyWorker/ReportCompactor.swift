import Logging
import ServiceLifecycle
import SurveyStorage

/// Keeps the report rollups compact: every statement that changes requests appends its
/// net change as new rollup rows, and this folds them, a batch of cells at a time, so a
/// report reads about one row per key. Reports are exact whether it runs or not.
public struct ReportCompactor: Service {
    let reports: ReportRepository
    let interval: Duration
    let logger: Logger

    public init(reports: ReportRepository, interval: Duration = .seconds(5), logger: Logger) {
        self.reports = reports
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        let batch = 500
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                // A full batch means there may be more: go on at once.
                while try await reports.compact(maximumCells: batch) == batch, !Task.isShuttingDownGracefully {}
            } catch {
                logger.warning("Compacting report rollups failed; retrying later.", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}
