/// A token bucket's parameters: `ratePerSecond` tokens refill it, up to `burst`.
public struct RateLimit: Sendable, Equatable {
    public var ratePerSecond: Double
    public var burst: Int

    public init(ratePerSecond: Double, burst: Int) {
        precondition(ratePerSecond > 0 && burst >= 1, "a rate limit needs a positive rate and a burst of at least 1")
        self.ratePerSecond = ratePerSecond
        self.burst = burst
    }

    /// How many tokens a replica takes from the shared bucket at once: a tenth of a
    /// second's worth, at least 1, at most the burst. Small enough that replicas share a
    /// limit fairly, large enough that a busy token costs a few lookups a second.
    public var leaseSize: Int { max(1, min(burst, Int(ratePerSecond / 10))) }

    /// 50 requests a second with bursts of 100, per API token.
    public static let perTokenDefault = RateLimit(ratePerSecond: 50, burst: 100)
    /// 200 requests a second with bursts of 400, per company (all its tokens together): ten
    /// tokens of one company do not get ten times the service.
    public static let perCompanyDefault = RateLimit(ratePerSecond: 200, burst: 400)
    /// 10 failed authentications a minute per client address, 20 at once.
    public static let failedAuthenticationDefault = RateLimit(ratePerSecond: 10.0 / 60, burst: 20)
}
