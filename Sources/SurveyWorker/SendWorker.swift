import Foundation
import Logging
import Metrics
import Postgres
import SMSGateway
import ServiceLifecycle
import Synchronization
import SurveyDomain
import SurveyStorage

/// A channel's worker: claims that channel's due jobs in batches, sends them through its
/// `MessageSender` at the configured rate, and records every outcome. Several run side by
/// side safely (one per channel in a process, and any number of processes): claims use
/// `FOR UPDATE SKIP LOCKED`, and a claimed job is committed as leased before its message
/// goes out, so no job is ever sent twice.
public struct SendWorker: Service {
    public struct Configuration: Sendable {
        /// Jobs claimed at once; their outcomes are committed together.
        public var batchSize = 500
        /// How long a claim holds. Far longer than one send (the provider's timeout), so a
        /// live worker always records its outcome first.
        public var lease: Duration = .seconds(120)
        /// Polling interval when LISTEN/NOTIFY says nothing (a fallback).
        public var pollInterval: Duration = .seconds(1)
        /// Messages in flight to the provider at once.
        public var concurrency = 64
        /// Messages per second towards the provider.
        public var ratePerSecond: Double = 100
        public var retry = RetryPolicy()
        /// How often to fail jobs whose lease ran out.
        public var reapInterval: Duration = .seconds(5)
        /// Claim-send-record loops running side by side, so one batch's database work
        /// overlaps another's sending.
        public var lanes = 2
        /// How long SMS that went out may stay only noted on their claim (durable, but their
        /// requests still `queued` and their message ids unknown to delivery callbacks)
        /// before they are recorded in full; a claim's end records them at once.
        public var fullRecordInterval: Duration = .milliseconds(250)

        public init() {}
    }

    let queue: QueueRepository
    let client: PostgresClient
    let sender: any MessageSender
    let configuration: Configuration
    let logger: Logger
    let limiter: RateLimiter<ContinuousClock>
    let metrics: WorkerMetrics

    public init(
        queue: QueueRepository, client: PostgresClient, sender: any MessageSender, configuration: Configuration, logger: Logger
    ) {
        self.queue = queue
        self.client = client
        self.sender = sender
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "channel"] = "\(sender.channel.rawValue)"
        self.logger = logger
        self.limiter = RateLimiter(perSecond: configuration.ratePerSecond, burst: max(1, Int(configuration.ratePerSecond / 10)))
        self.metrics = WorkerMetrics(channel: sender.channel)
    }

    /// The SMS worker.
    public init(
        queue: QueueRepository, client: PostgresClient, provider: any SMSProvider, configuration: Configuration, logger: Logger
    ) {
        self.init(queue: queue, client: client, sender: SMSSender(provider: provider), configuration: configuration, logger: logger)
    }

    public func run() async throws {
        let wakeup = Wakeup()
        let stopping = StopFlag()
        logger.info("worker started", metadata: ["rate_per_second": "\(configuration.ratePerSecond)", "batch": "\(configuration.batchSize)"])
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    await NotificationListener.listen(
                        client: client, channel: SendRepository.notificationChannel, wakeup: wakeup, logger: logger)
                }
                await withTaskGroup(of: Void.self) { lanes in
                    for lane in 0..<max(1, configuration.lanes) {
                        lanes.addTask { await process(lane: lane, wakeup: wakeup, stopping: stopping) }
                    }
                }
                group.cancelAll()
            }
        } onGracefulShutdown: {
            stopping.set()
            wakeup.ring()
        }
        logger.info("worker stopped")
    }

    // MARK: The loop

    func process(lane: Int, wakeup: Wakeup, stopping: StopFlag) async {
        let clock = ContinuousClock()
        var lastReap = clock.now - configuration.reapInterval
        while !stopping.isSet, !Task.isCancelled {
            do {
                // One lane reaps; they would only race for the same rows.
                if lane == 0, clock.now - lastReap >= configuration.reapInterval {
                    lastReap = clock.now
                    let reaped = try await queue.failExpiredLeases()
                    if reaped.failed > 0 {
                        metrics.failed(reason: "reaped", count: reaped.failed)
                        logger.warning(
                            "jobs whose lease ran out after they started (uncertain) or too old (expired) failed",
                            metadata: ["count": "\(reaped.failed)"])
                    }
                    if reaped.returned > 0 {
                        logger.notice(
                            "jobs claimed by a worker that stopped before sending them went back to the queue",
                            metadata: ["count": "\(reaped.returned)"])
                    }
                }
                let jobs = try await queue.claim(sender.channel, limit: batchSize, lease: configuration.lease)
                if jobs.isEmpty {
                    await wakeup.wait(timeout: configuration.pollInterval)
                    continue
                }
                try await sendAndRecord(jobs, stopping: stopping)
            } catch {
                logger.cycleFailed("worker cycle failed", error: error)
                await wakeup.wait(timeout: configuration.pollInterval)
            }
        }
    }

    /// Jobs claimed at once: no more than a quarter of a lease's worth at the rate limit
    /// (per lane), so a slow rate never keeps a claimed job waiting until its lease runs out.
    var batchSize: Int {
        let affordable = configuration.ratePerSecond * Double(configuration.lease.components.seconds) / 4 / Double(max(1, configuration.lanes))
        return max(1, min(configuration.batchSize, Int(affordable)))
    }

    /// Jobs a lane may have between being marked as started and having their outcome
    /// recorded: its share of `concurrency`. Only such jobs can end `uncertain` if the
    /// worker dies, so a dead worker leaves at most `concurrency` of them (or one per lane,
    /// when there are more lanes than that).
    var laneBudget: Int { max(1, configuration.concurrency / max(1, configuration.lanes)) }

    /// Sends a claimed batch a window of `laneBudget` jobs at a time, in claim order: the
    /// claim's progress is moved past a window just before its provider calls, in the same
    /// transaction that records the previous window's outcomes (one commit per window; half
    /// windows, overlapping, measured a fifth slower). SMS that went out are only noted on
    /// the claim then, and recorded in full every `fullRecordInterval` and at the claim's
    /// end: the full record has a fixed cost of milliseconds of the database's CPU, better
    /// paid once a claim than once a window. If the worker is stopping, or half the lease
    /// is gone, jobs not yet started go back to the queue untouched. A worker killed
    /// meanwhile leaves its unstarted jobs to return to the queue when the lease runs out;
    /// only the started ones that it had not noted or recorded are uncertain.
    func sendAndRecord(_ jobs: [QueueRepository.Job], stopping: StopFlag) async throws {
        let clock = ContinuousClock()
        let claimed = clock.now
        var pending = jobs[...]
        var canStart: Bool { !pending.isEmpty && !stopping.isSet && clock.now - claimed <= configuration.lease / 2 }
        try await withThrowingTaskGroup(of: (QueueRepository.Job, QueueRepository.Outcome).self) { group in
            var inFlight = 0
            var unrecorded: [(QueueRepository.Job, QueueRepository.Outcome)] = []
            /// The next jobs to start, within the budget.
            func nextWindow(free: Int) -> [QueueRepository.Job] {
                guard canStart, free >= min(laneBudget, pending.count) else { return [] }
                let next = Array(pending.prefix(free))
                pending = pending.dropFirst(next.count)
                return next
            }
            /// Starts the window if the claim is still this worker's; if not, the reaper
            /// took it back (this worker stalled past its lease) and its jobs are left alone.
            func start(_ next: [QueueRepository.Job], marked: QueueRepository.Marked) {
                guard marked.claimHeld else { return }
                for var job in next {
                    if marked.optedOut.contains(job.id) { job.optedOut = true }
                    group.addTask { (job, await attempt(job, stopping: stopping)) }
                    inFlight += 1
                }
            }

            // The claim looked at the opt-outs; after a second, each window looks again.
            var recheck: Bool { clock.now - claimed > .seconds(1) }
            // SMS that went out are noted per window and recorded in full now and then.
            let noting = sender.channel == .sms
            var notedSince: ContinuousClock.Instant?
            let first = nextWindow(free: laneBudget)
            start(first, marked: try await queue.markStarted(first, recheckOptOuts: recheck))
            while inFlight > 0 {
                if let result = try await group.next() {
                    inFlight -= 1
                    unrecorded.append(result)
                }
                guard unrecorded.count >= laneBudget || inFlight == 0 else { continue }
                let next = nextWindow(free: laneBudget - inFlight)
                let marked = try await record(unrecorded, starting: next, recheckOptOuts: recheck, noting: noting)
                if noting, notedSince == nil { notedSince = clock.now }
                unrecorded.removeAll(keepingCapacity: true)
                start(next, marked: marked)
                if let since = notedSince, clock.now - since >= configuration.fullRecordInterval, let leaseID = jobs.first?.leaseID {
                    await recordNoted(claim: leaseID)
                    notedSince = nil
                }
            }
            // Not started: back to the queue as they were.
            if !pending.isEmpty { try await record(pending.map { ($0, .release) }) }
            if let leaseID = jobs.first?.leaseID { try await retrying("finishing the claim") { try await queue.finish(claim: leaseID) } }
        }
    }

    func attempt(_ job: QueueRepository.Job, stopping: StopFlag) async -> QueueRepository.Outcome {
        if job.optedOut { return .failed(reason: "opted-out") }
        if stopping.isSet { return .release }
        // Paced here, each call on its own, so the provider sees the configured rate rather
        // than a window's burst.
        do {
            try await limiter.acquire()
        } catch {
            return .release
        }
        if stopping.isSet { return .release }
        let sent = await sender.send(job)
        let message = sender.channel == .email ? "e-mail" : sender.channel == .voice ? "call" : "SMS"
        switch sent.attempt {
        case .accepted(let id):
            return .sent(providerMessageID: id, segments: sent.segments)
        case .optedOut:
            return .failed(reason: "opted-out")
        case .permanent(let reason):
            logger.info("\(message) refused", metadata: ["request_id": "\(job.request)", "reason": "\(reason)"])
            return .failed(reason: "permanent")
        case .uncertain(let reason):
            logger.warning("\(message) outcome unknown; not retried", metadata: ["request_id": "\(job.request)", "reason": "\(reason)"])
            return .failed(reason: "uncertain")
        case .retryable(let reason, let retryAfter):
            let age = Duration.seconds(Date().timeIntervalSince(job.dueAt))
            switch configuration.retry.decide(attempts: job.attempts, age: age, retryAfter: retryAfter) {
            case .retry(let delay):
                logger.info("\(message) will be retried", metadata: ["request_id": "\(job.request)", "reason": "\(reason)", "attempt": "\(job.attempts)"])
                return .retry(after: delay)
            case .giveUp:
                return .failed(reason: "retries-exhausted")
            }
        }
    }

    /// Records a batch's outcomes (and marks `next` as started), retrying while the
    /// database is away, for up to a quarter of the lease: long enough to ride out a
    /// failover (the outcomes are known here, and would otherwise be lost as `uncertain`),
    /// short enough that the lease, half of which may already be spent sending, still
    /// holds. If it never succeeds the leases run out: the started jobs fail as uncertain,
    /// never sent twice, and `next` goes back to the queue unsent.
    @discardableResult
    func record(
        _ outcomes: [(QueueRepository.Job, QueueRepository.Outcome)], starting next: [QueueRepository.Job] = [],
        recheckOptOuts: Bool = true, noting: Bool = false
    ) async throws -> QueueRepository.Marked {
        let marked = try await retrying("recording outcomes") {
            try await queue.complete(outcomes, starting: next, recheckOptOuts: recheckOptOuts, noting: noting)
        }
        metrics.count(outcomes.map(\.1))
        return marked
    }

    /// Runs `body` again while the database is away, for up to a quarter of the lease (see
    /// `record`), with backoff.
    func retrying<Result>(_ what: String, _ body: () async throws -> Result) async throws -> Result {
        let clock = ContinuousClock()
        let giveUp = clock.now + configuration.lease / 4
        var delay = Duration.milliseconds(100)
        while true {
            do {
                return try await body()
            } catch {
                if clock.now + delay >= giveUp { throw error }
                logger.warning("\(what) failed; retrying", metadata: ["error": "\(String(reflecting: error))"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(2))
            }
        }
    }
}

extension SendWorker {
    /// Records what the claim noted so far. A failure only delays it: the claim's end, or
    /// the reaper if this worker dies, records the notes.
    func recordNoted(claim leaseID: String) async {
        do {
            try await queue.applyNoted(claim: leaseID)
        } catch {
            logger.warning("recording noted sends failed; the claim's end will", metadata: ["error": "\(String(reflecting: error))"])
        }
    }
}

final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

/// A channel's counters through swift-metrics (`sms_sent_total`, `email_sent_total`, …);
/// labelled by outcome only, never by tenant.
struct WorkerMetrics: Sendable {
    let prefix: String
    let sent: Counter
    let retried: Counter

    init(channel: Channel) {
        prefix = channel.rawValue.lowercased()
        sent = Counter(label: "\(prefix)_sent_total")
        retried = Counter(label: "\(prefix)_retried_total")
    }

    func failed(reason: String, count: Int) {
        Counter(label: "\(prefix)_failed_total", dimensions: [("reason", reason)]).increment(by: count)
    }

    func count(_ outcomes: [QueueRepository.Outcome]) {
        var failures: [String: Int] = [:]
        for outcome in outcomes {
            switch outcome {
            case .sent: sent.increment()
            case .retry: retried.increment()
            case .failed(let reason): failures[reason, default: 0] += 1
            case .release: break
            }
        }
        for (reason, count) in failures { failed(reason: reason, count: count) }
    }
}
