import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SurveyDomain
import SurveyStorage

/// Admits scheduled jobs as they fall due (every `interval`): each is queued for the
/// senders, cancelled with the send rule that no longer holds, or put back to the end of
/// its company's quiet hours. Several workers may run one each: they skip each other's jobs.
public struct Scheduler: Service {
    public struct Configuration: Sendable {
        public var interval: Duration = .seconds(1)
        /// Jobs per transaction; a full batch is followed at once by the next.
        public var batchSize = 1000

        public init() {}
    }

    let repository: SchedulerRepository
    let configuration: Configuration
    let logger: Logger

    public init(database: Database, policy: SendingPolicy, configuration: Configuration = Configuration(), logger: Logger) {
        self.repository = SchedulerRepository(database: database, policy: policy)
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await admitDue()
                do { try await Task.sleep(for: configuration.interval) } catch { return }
            }
        }
    }

    /// One pass: batches until a batch comes back short.
    func admitDue() async {
        do {
            while !Task.isCancelled {
                let pass = try await repository.admitDue(limit: configuration.batchSize)
                record(pass)
                if pass.examined < configuration.batchSize { return }
            }
        } catch {
            logger.warning("admitting scheduled jobs failed; will retry", metadata: ["error": "\(String(reflecting: error))"])
        }
    }

    private func record(_ pass: SchedulerRepository.Admission) {
        if pass.admitted > 0 { Counter(label: "sms_scheduled_admitted_total").increment(by: pass.admitted) }
        if pass.postponed > 0 { Counter(label: "sms_scheduled_postponed_total").increment(by: pass.postponed) }
        for (reason, count) in pass.cancelled {
            Counter(label: "sms_scheduled_cancelled_total", dimensions: [("reason", reason)]).increment(by: count)
        }
        if !pass.cancelled.isEmpty {
            logger.info("scheduled requests cancelled at their due time", metadata: ["reasons": "\(pass.cancelled)"])
        }
    }
}
