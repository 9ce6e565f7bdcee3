/// When a failed webhook delivery is tried again: exponential steps from seconds to a day,
/// each moved by up to ±20 % of jitter (so endpoints that failed together are not retried
/// together), for more than three days in all even at the shortest jitter. A `Retry-After`
/// from the receiver (429, 503) is honoured when it asks for longer, up to a day.
public struct WebhookRetrySchedule: Sendable {
    /// The wait after each failed attempt, the first attempt's first: the product's schedule.
    public static let standard: [Duration] = [
        .seconds(5), .seconds(5 * 60), .seconds(30 * 60), .seconds(2 * 3600), .seconds(5 * 3600), .seconds(10 * 3600),
        .seconds(14 * 3600), .seconds(20 * 3600), .seconds(24 * 3600), .seconds(24 * 3600),
    ]
    public static let jitter = 0.2
    public static let longestRetryAfter = Duration.seconds(24 * 3600)

    /// The waits in use (tests shorten them).
    public var steps: [Duration]

    public init(steps: [Duration] = WebhookRetrySchedule.standard) {
        self.steps = steps
    }

    /// How long to wait after failed attempt number `attempt` (from 1), or `nil` when that
    /// was the last. `unit` is a number in 0..<1 (random in production, fixed in tests).
    public func delay(afterAttempt attempt: Int, retryAfter: Duration? = nil, unit: Double) -> Duration? {
        guard attempt >= 1, attempt <= steps.count else { return nil }
        let step = steps[attempt - 1]
        // Whole milliseconds: a schedule written in the database and the docs, not a float.
        let factor = 1 - Self.jitter + 2 * Self.jitter * min(max(unit, 0), 1)
        let jittered = Duration.milliseconds(Int64((Double(step.roundedUpMilliseconds) * factor).rounded()))
        guard let retryAfter else { return jittered }
        return max(jittered, min(retryAfter, Self.longestRetryAfter))
    }

    /// The shortest time from the first attempt to the last: what the docs promise.
    public static var shortestSpan: Duration {
        standard.reduce(.zero) { $0 + $1 * (1 - jitter) }
    }
}

/// What follows an attempt.
public enum WebhookNextStep: Sendable, Equatable {
    case succeeded
    case retry(after: Duration)
    case giveUp
}

extension WebhookRetrySchedule {
    /// After attempt number `attempt` (from 1): done on a 2xx; given up on 410 Gone (the
    /// endpoint is disabled too), when the schedule has run out, or when `retrying` is
    /// false (a `/test` ping, a manual replay of a delivery that had ended); else the next
    /// step of the schedule.
    public func next(
        afterAttempt attempt: Int, succeeded: Bool, gone: Bool, retryAfter: Duration?, retrying: Bool = true, unit: Double
    ) -> WebhookNextStep {
        if succeeded { return .succeeded }
        guard !gone, retrying, let delay = delay(afterAttempt: attempt, retryAfter: retryAfter, unit: unit) else { return .giveUp }
        return .retry(after: delay)
    }
}
