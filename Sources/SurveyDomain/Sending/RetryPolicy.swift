/// When to try a message again after a failure that sent nothing: exponential backoff
/// with full jitter, up to a number of attempts and an age.
public struct RetryPolicy: Sendable, Equatable {
    public var maximumAttempts: Int
    public var maximumAge: Duration
    public var baseDelay: Duration
    public var maximumDelay: Duration

    public init(
        maximumAttempts: Int = 8, maximumAge: Duration = .seconds(3600), baseDelay: Duration = .seconds(2),
        maximumDelay: Duration = .seconds(300)
    ) {
        self.maximumAttempts = maximumAttempts
        self.maximumAge = maximumAge
        self.baseDelay = baseDelay
        self.maximumDelay = maximumDelay
    }

    public enum Decision: Equatable, Sendable {
        case retry(after: Duration)
        case giveUp
    }

    /// After `attempts` attempts (the failed one included) on a job `age` old.
    /// `retryAfter` is the provider's own hint (429 `Retry-After`), honoured as a minimum.
    public func decide(
        attempts: Int, age: Duration, retryAfter: Duration? = nil,
        random: (ClosedRange<Double>) -> Double = { Double.random(in: $0) }
    ) -> Decision {
        guard attempts < maximumAttempts else { return .giveUp }
        let exponent = min(attempts - 1, 30)
        let ceiling = min(baseDelay * (1 << exponent), maximumDelay)
        // Full jitter spreads retries of a burst of failures apart.
        var delay = ceiling * random(0.5...1.0)
        if let retryAfter, retryAfter > delay { delay = retryAfter }
        guard age + delay <= maximumAge else { return .giveUp }
        return .retry(after: delay)
    }
}
