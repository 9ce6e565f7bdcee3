import SurveyWorker
import Testing

@Suite struct RateLimiterTests {
    @Test func spacesCallsToTheRateAfterTheBurst() async throws {
        let limiter = RateLimiter(perSecond: 100, burst: 5)
        let clock = ContinuousClock()
        let start = clock.now
        // 5 at once (the burst), then 25 more at 10 ms each: at least 240 ms.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<30 { group.addTask { try await limiter.acquire() } }
            try await group.waitForAll()
        }
        let elapsed = clock.now - start
        #expect(elapsed >= .milliseconds(230))
        #expect(elapsed < .seconds(2))
    }

    @Test func anIdleLimiterDoesNotMakeTheFirstCallsWait() async throws {
        let limiter = RateLimiter(perSecond: 10, burst: 3)
        try await Task.sleep(for: .milliseconds(50))
        let clock = ContinuousClock()
        let start = clock.now
        for _ in 0..<3 { try await limiter.acquire() }
        #expect(clock.now - start < .milliseconds(50))
    }
}
