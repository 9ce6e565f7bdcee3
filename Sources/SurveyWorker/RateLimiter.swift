import Synchronization

/// Spaces calls to at most `rate` per second, with bursts of up to `burst`: gateways and
/// short codes enforce a throughput, and going over it only earns 429s.
///
/// Each caller reserves the next free slot under a lock and sleeps until it, so
/// concurrent senders share one budget (a generic cell rate algorithm).
public final class RateLimiter: Sendable {
    private let interval: Duration
    private let burst: Duration
    private let nextSlot: Mutex<ContinuousClock.Instant>
    private let clock = ContinuousClock()

    public init(perSecond rate: Double, burst: Int = 1) {
        precondition(rate > 0)
        interval = .nanoseconds(Int64(1e9 / rate))
        self.burst = interval * max(burst - 1, 0)
        // Start with a full bucket: the first `burst` calls go at once.
        nextSlot = Mutex(ContinuousClock.now - self.burst)
    }

    /// Waits for a slot. Cancellation ends the wait early (the slot is then lost, which is safe).
    public func acquire() async throws {
        let now = clock.now
        let slot = nextSlot.withLock { next -> ContinuousClock.Instant in
            let earliest = now - burst
            let slot = next < earliest ? earliest : next
            next = slot + interval
            return slot
        }
        if slot > now { try await clock.sleep(until: slot) }
    }
}
