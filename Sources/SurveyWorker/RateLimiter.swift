import Synchronization

/// Spaces calls to at most `rate` per second, with bursts of up to `burst`: gateways and
/// short codes enforce a throughput, and going over it only earns 429s.
///
/// Each caller reserves the next free slot under a lock and sleeps until it, so
/// concurrent senders share one budget (a generic cell rate algorithm). Generic over its
/// clock, so tests drive it with one of their own.
public final class RateLimiter<C: Clock>: Sendable where C.Duration == Duration, C.Instant: Sendable {
    private let interval: Duration
    private let burst: Duration
    private let nextSlot: Mutex<C.Instant>
    private let clock: C

    public init(perSecond rate: Double, burst: Int = 1, clock: C) {
        precondition(rate > 0)
        interval = .nanoseconds(Int64(1e9 / rate))
        self.burst = interval * max(burst - 1, 0)
        self.clock = clock
        // Start with a full bucket: the first `burst` calls go at once.
        nextSlot = Mutex(clock.now.advanced(by: .zero - self.burst))
    }

    /// Waits for a slot. Cancellation ends the wait early (the slot is then lost, which is safe).
    public func acquire() async throws {
        let now = clock.now
        let slot = nextSlot.withLock { next -> C.Instant in
            let earliest = now.advanced(by: .zero - burst)
            let slot = next < earliest ? earliest : next
            next = slot.advanced(by: interval)
            return slot
        }
        if slot > now { try await clock.sleep(until: slot, tolerance: nil) }
    }
}

extension RateLimiter where C == ContinuousClock {
    public convenience init(perSecond rate: Double, burst: Int = 1) {
        self.init(perSecond: rate, burst: burst, clock: ContinuousClock())
    }
}
