import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SurveyStorage

/// Publishes the queue's depth and the age of its oldest job: the two numbers that say
/// whether the workers keep up (a growing age with a flat depth is a stuck job; with a
/// growing depth, too few workers or a slow provider).
public struct QueueMonitor: Service {
    let queue: QueueRepository
    let interval: Duration
    let logger: Logger
    private let depth = Gauge(label: "sms_queue_jobs")
    private let oldestAge = Gauge(label: "sms_queue_oldest_job_age_seconds")

    public init(queue: QueueRepository, interval: Duration = .seconds(5), logger: Logger) {
        self.queue = queue
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let (jobs, oldest) = try await queue.depth()
                    depth.record(jobs)
                    oldestAge.record(oldest.map { max(0, Date().timeIntervalSince($0)) } ?? 0)
                } catch {
                    logger.debug("could not measure the queue", metadata: ["error": "\(error)"])
                }
                do { try await Task.sleep(for: interval) } catch { return }
            }
        }
    }
}
