import Foundation
import Logging
import Metrics
import Postgres
import ServiceLifecycle
import SurveyDomain
import SurveyStorage
import Synchronization
import WebhookSender

/// Delivers company webhooks from the outbox, apart from SMS dispatch (its own database
/// pool, its own tasks): claims due deliveries as capacity frees up, runs each attempt on
/// its own (one slow endpoint never holds up another's attempts: no batch waits for its
/// slowest member), and records outcomes in batches as they come. Several workers share
/// the work: claims skip what another holds, and a per-endpoint cap counts every
/// worker's attempts under way.
///
/// A worker that dies mid-attempt leaves the delivery leased; when the lease runs out it
/// is claimed again and sent with the same `webhook-id` (at least once).
public struct WebhookDispatcher: Service {
    public struct Configuration: Sendable {
        /// Attempts under way at once in this worker. Far more than one company may hold
        /// (`perCompany`), so hanging endpoints of a few companies leave the rest room.
        public var maximumInFlight = 512
        /// Attempts under way at once to one endpoint, across workers.
        public var perEndpoint = 16
        /// Attempts under way at once for one company's endpoints together, across workers
        /// (about: workers claiming for two of its endpoints at once may each count the other short).
        public var perCompany = 64
        /// Deliveries claimed per statement.
        public var claimBatch = 100
        /// Far longer than an attempt (the sender's timeout), so a live worker always records first.
        public var lease: Duration = .seconds(60)
        /// When no NOTIFY comes: how often to look for retries falling due.
        public var pollInterval: Duration = .seconds(1)
        /// How often to look for response windows that closed (`request.expired`).
        public var expirySweepInterval: Duration = .seconds(5)
        /// The longest response window (the sending policy's).
        public var responseWindow: Duration = .seconds(72 * 3600)
        /// An endpoint whose every attempt failed this long is disabled.
        public var failureLimit: Duration = .seconds(5 * 86_400)
        /// When failed attempts are made again.
        public var retrySchedule = WebhookRetrySchedule()

        public init() {}
    }

    let deliveries: WebhookDeliveryRepository
    let client: PostgresClient
    let sender: WebhookSender
    let configuration: Configuration
    let logger: Logger
    var schedule: WebhookRetrySchedule { configuration.retrySchedule }

    public init(database: Database, sender: WebhookSender, configuration: Configuration, logger: Logger) {
        self.deliveries = WebhookDeliveryRepository(database: database)
        self.client = database.client
        self.sender = sender
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        let work = Wakeup()
        let stopping = StopFlag()
        let outcomes = Outcomes()
        logger.info("webhook dispatcher started", metadata: ["in_flight": "\(configuration.maximumInFlight)", "per_endpoint": "\(configuration.perEndpoint)"])
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask {
                    await NotificationListener.listen(client: client, channel: "webhook_deliveries", wakeup: work, logger: logger)
                }
                group.addTask { await sweepExpired(stopping: stopping) }
                group.addTask { await recordOutcomes(outcomes, work: work, stopping: stopping) }
                await claimAndSend(into: &group, outcomes: outcomes, work: work, stopping: stopping)
                // Stopping: the attempts under way finish and are recorded, then the rest ends.
                // (Cancelled instead, the group's tasks are too: their leases run out.)
                while outcomes.inFlight > 0, !Task.isCancelled { await outcomes.drained.wait(timeout: .milliseconds(100)) }
                group.cancelAll()
            }
        } onGracefulShutdown: {
            stopping.set()
            work.ring()
        }
        await sender.shutdown()
        logger.info("webhook dispatcher stopped")
    }

    func claimAndSend(
        into group: inout DiscardingTaskGroup, outcomes: Outcomes, work: Wakeup, stopping: StopFlag
    ) async {
        while !stopping.isSet, !Task.isCancelled {
            let free = configuration.maximumInFlight - outcomes.inFlight
            guard free > 0 else {
                await work.wait(timeout: configuration.pollInterval)
                continue
            }
            let limit = min(free, configuration.claimBatch)
            let claimed: [WebhookDeliveryRepository.Claimed]
            do {
                claimed = try await deliveries.claim(
                    limit: limit, perEndpoint: configuration.perEndpoint, perCompany: configuration.perCompany, lease: configuration.lease)
            } catch {
                logger.cycleFailed("claiming webhook deliveries failed", error: error)
                await work.wait(timeout: configuration.pollInterval)
                continue
            }
            outcomes.started(claimed.count)
            for delivery in claimed {
                group.addTask {
                    let result = await sender.send(
                        WebhookMessage(id: delivery.messageID, body: Array(delivery.body.utf8), url: delivery.url, secrets: delivery.secrets,
                            connectionKey: delivery.connectionKey))
                    outcomes.add(WebhookDeliveryRepository.attempt(delivery, result: result, schedule: schedule, unit: Double.random(in: 0..<1)))
                }
            }
            // A full claim may have left more: claim again at once. Otherwise wait for a
            // NOTIFY, capacity freed at an endpoint, or the poll.
            if claimed.count < limit { await work.wait(timeout: configuration.pollInterval) }
        }
    }

    /// Records outcomes as they come: whatever arrived while the last batch was being
    /// written goes in the next (one statement each).
    func recordOutcomes(_ outcomes: Outcomes, work: Wakeup, stopping: StopFlag) async {
        while !Task.isCancelled {
            await outcomes.ready.wait(timeout: .milliseconds(200))
            let batch = outcomes.take()
            guard !batch.isEmpty else { continue }
            await record(batch)
            outcomes.finished(batch.count)
            work.ring()
        }
    }

    /// Records a batch in one statement, retrying a few times if the database blips. If the
    /// batch still fails, each attempt is recorded on its own, so one that cannot be (it
    /// breaks a constraint) does not hold up the others; one never recorded is made again
    /// when its lease runs out.
    func record(_ batch: [WebhookDeliveryRepository.Attempt]) async {
        var delay = Duration.milliseconds(100)
        for attempt in 1...3 {
            do {
                count(batch, disabled: try await deliveries.record(batch, failureLimit: configuration.failureLimit))
                return
            } catch {
                logger.warning("recording webhook attempts failed", metadata: ["error": "\(String(reflecting: error))", "try": "\(attempt)"])
                if attempt < 3 {
                    try? await Task.sleep(for: delay)
                    delay *= 2
                }
            }
        }
        guard batch.count > 1 else { return }
        for attempt in batch {
            do {
                count([attempt], disabled: try await deliveries.record([attempt], failureLimit: configuration.failureLimit))
            } catch {
                logger.cycleFailed(
                    "recording a webhook attempt failed; it will be made again when its lease runs out", error: error,
                    metadata: ["delivery_id": "\(attempt.delivery.id)"])
            }
        }
    }

    /// Every `expirySweepInterval`: `request.expired` for the windows that closed, and the
    /// endpoints whose failure streak reached the limit with no attempt failing since.
    func sweepExpired(stopping: StopFlag) async {
        while !Task.isCancelled, !stopping.isSet {
            do {
                let emitted = try await deliveries.emitExpired(longestWindow: configuration.responseWindow)
                if emitted > 0 { Counter(label: "webhook_events_emitted_total", dimensions: [("type", "request.expired")]).increment(by: emitted) }
                count([], disabled: try await deliveries.disableFailingEndpoints(failureLimit: configuration.failureLimit))
            } catch {
                logger.warning("the webhook sweep failed; will retry", metadata: ["error": "\(String(reflecting: error))"])
            }
            do { try await Task.sleep(for: configuration.expirySweepInterval) } catch { return }
        }
    }

    private func count(_ batch: [WebhookDeliveryRepository.Attempt], disabled: [WebhookDeliveryRepository.Disabled]) {
        var counts: [String: Int] = [:]
        for attempt in batch {
            switch attempt.next {
            case .succeeded: counts["succeeded", default: 0] += 1
            case .retry: counts["retry", default: 0] += 1
            case .giveUp: counts["failed", default: 0] += 1
            }
        }
        for (outcome, count) in counts {
            Counter(label: "webhook_attempts_total", dimensions: [("outcome", outcome)]).increment(by: count)
        }
        for endpoint in disabled {
            Counter(label: "webhook_endpoints_disabled_total").increment()
            logger.notice(
                "webhook endpoint disabled",
                metadata: ["company_id": "\(endpoint.company)", "endpoint_id": "\(endpoint.endpoint)", "reason": "\(endpoint.reason)"])
        }
    }
}

/// Attempts made but not yet recorded, and how many are under way.
final class Outcomes: Sendable {
    private struct State {
        var attempts: [WebhookDeliveryRepository.Attempt] = []
        var inFlight = 0
    }
    private let state = Mutex(State())
    /// Rung when an outcome arrives.
    let ready = Wakeup()
    /// Rung when recorded outcomes free capacity.
    let drained = Wakeup()

    var inFlight: Int { state.withLock { $0.inFlight } }

    func started(_ count: Int) { state.withLock { $0.inFlight += count } }

    func add(_ attempt: WebhookDeliveryRepository.Attempt) {
        state.withLock { $0.attempts.append(attempt) }
        ready.ring()
    }

    func take() -> [WebhookDeliveryRepository.Attempt] {
        state.withLock { state in
            defer { state.attempts.removeAll() }
            return state.attempts
        }
    }

    func finished(_ count: Int) {
        state.withLock { $0.inFlight -= count }
        drained.ring()
    }
}
