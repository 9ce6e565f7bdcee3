import SurveyWorker
import TestSupport
import Testing

/// On a virtual clock: every sleep moves time to its deadline at once, so the assertions
/// are on exact instants, whatever the machine's load (they used to measure wall time).
@Suite struct RateLimiterTests {
    @Test func spacesCallsToTheRateAfterTheBurst() async throws {
        let clock = VirtualClock()
        let limiter = RateLimiter(perSecond: 100, burst: 5, clock: clock)
        let start = clock.now
        var granted: [Duration] = []
        for _ in 0..<30 {
            try await limiter.acquire()
            granted.append(start.duration(to: clock.now))
        }
        // 5 at once (the burst), then one every 10 ms.
        #expect(granted.prefix(5).allSatisfy { $0 == .zero })
        #expect(Array(granted.dropFirst(5)) == (1...25).map { Duration.milliseconds(10 * $0) })
    }

    @Test func anIdleLimiterRefillsItsBurst() async throws {
        let clock = VirtualClock()
        let limiter = RateLimiter(perSecond: 10, burst: 3, clock: clock)
        for _ in 0..<3 { try await limiter.acquire() }
        #expect(clock.now.offset == .zero)
        try await limiter.acquire()
        #expect(clock.now.offset == .milliseconds(100))
        // Idle for a second: a whole burst is there again, and no more.
        clock.advance(by: .seconds(1))
        let rested = clock.now
        for _ in 0..<3 { try await limiter.acquire() }
        #expect(clock.now == rested)
        try await limiter.acquire()
        #expect(rested.duration(to: clock.now) == .milliseconds(100))
    }
}
