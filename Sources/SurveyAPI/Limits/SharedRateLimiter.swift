import Logging
import SurveyDomain
import SurveyStorage
import Synchronization

/// Token buckets whose state is in PostgreSQL (`RateLimitRepository`), so a limit holds
/// across every `serve` replica, spent locally from small leases so that a request rarely
/// waits for the database.
///
/// Requests that find a key's lease empty wait for one lease together rather than each
/// taking their own. Tokens of a lease that expires unused are lost, which errs on the
/// strict side by at most one lease per replica per `leaseLifetime`. When the database
/// cannot be asked the limiter lets requests through for a moment: a limiter must never
/// be why the service is down (those requests meet the outage on their own queries).
///
/// Generic over its clock (leases' lifetimes, blocks), so tests can move time by hand.
public final class SharedRateLimiter<C: Clock>: Sendable where C.Duration == Duration, C.Instant: Sendable {
    public enum Decision: Sendable, Equatable {
        case allowed
        case limited(retryAfter: Duration)
    }

    private enum Step {
        case decided(Decision)
        case wait(Task<Void, Never>)
    }

    private struct Entry {
        var tokens = 0
        var leaseExpiry: C.Instant
        var blockedUntil: C.Instant?
        var lease: Task<Void, Never>?
    }

    private let repository: RateLimitRepository
    private let leaseLifetime: Duration
    private let capacity: Int
    private let logger: Logger
    private let entries = Mutex<[String: Entry]>([:])
    private let clock: C

    public init(
        repository: RateLimitRepository, leaseLifetime: Duration = .seconds(1), capacity: Int = 100_000, clock: C,
        logger: Logger
    ) {
        self.clock = clock
        self.repository = repository
        self.leaseLifetime = leaseLifetime
        self.capacity = capacity
        self.logger = logger
    }

    /// Spends one token of `key`'s bucket, or says how long until there is one.
    public func acquire(_ key: String, limit: RateLimit) async -> Decision {
        while true {
            let step = entries.withLock { entries -> Step in
                let now = clock.now
                if entries[key] == nil, entries.count >= capacity { evictIdle(&entries, now: now) }
                var entry = entries[key] ?? Entry(leaseExpiry: now)
                defer { entries[key] = entry }
                if let until = entry.blockedUntil, until > now { return .decided(.limited(retryAfter: now.duration(to: until))) }
                if entry.tokens > 0, entry.leaseExpiry > now {
                    entry.tokens -= 1
                    return .decided(.allowed)
                }
                if let lease = entry.lease { return .wait(lease) }
                let lease = Task { await self.lease(key, limit: limit) }
                entry.lease = lease
                return .wait(lease)
            }
            switch step {
            case .decided(let decision): return decision
            case .wait(let lease): await lease.value
            }
        }
    }

    /// How long `key` is still refused, from what this replica already knows (no database).
    public func blockedFor(_ key: String) -> Duration? {
        entries.withLock { entries in
            guard let until = entries[key]?.blockedUntil else { return nil }
            let now = clock.now
            return until > now ? now.duration(to: until) : nil
        }
    }

    /// Forgets keys with nothing live: no tokens in a current lease, no block, no lease in flight.
    public func evictIdle() {
        entries.withLock { evictIdle(&$0, now: clock.now) }
    }

    var keyCount: Int { entries.withLock { $0.count } }

    private func evictIdle(_ entries: inout [String: Entry], now: C.Instant) {
        entries = entries.filter { _, entry in
            entry.lease != nil || entry.leaseExpiry > now || (entry.blockedUntil.map { $0 > now } ?? false)
        }
    }

    private func lease(_ key: String, limit: RateLimit) async {
        let outcome: Result<(granted: Int, retryAfter: Duration), any Error>
        do {
            outcome = .success(
                try await repository.take(limit.leaseSize, from: key, rate: limit.ratePerSecond, burst: limit.burst))
        } catch {
            outcome = .failure(error)
        }
        entries.withLock { entries in
            let now = clock.now
            var entry = entries[key] ?? Entry(leaseExpiry: now)
            entry.lease = nil
            switch outcome {
            case .success(let (granted, retryAfter)):
                entry.tokens = granted
                entry.leaseExpiry = now.advanced(by: leaseLifetime)
                entry.blockedUntil = granted == 0 ? now.advanced(by: max(retryAfter, .milliseconds(1))) : nil
            case .failure:
                entry.tokens = limit.burst
                entry.leaseExpiry = now.advanced(by: leaseLifetime)
                entry.blockedUntil = nil
            }
            entries[key] = entry
        }
        if case .failure(let error) = outcome {
            logger.warning("rate limit state unreachable; allowing requests for now", metadata: ["error": "\(error)"])
        }
    }
}

extension SharedRateLimiter where C == ContinuousClock {
    public convenience init(
        repository: RateLimitRepository, leaseLifetime: Duration = .seconds(1), capacity: Int = 100_000, logger: Logger
    ) {
        self.init(repository: repository, leaseLifetime: leaseLifetime, capacity: capacity, clock: ContinuousClock(), logger: logger)
    }
}
