import SurveyDomain

/// When the work of the current request must be done by, if it has a deadline: set by the
/// API for each request, read here to bound the statements it runs (their
/// `statement_timeout` is what is left), so a request past its time is stopped by the
/// database itself instead of by a watchdog task per request.
public enum RequestDeadline {
    @TaskLocal public static var current: ContinuousClock.Instant?

    /// `SET LOCAL statement_timeout` for what is left of the deadline (at least 1 ms), or
    /// nothing without a deadline.
    static func statementTimeoutSetting(now: ContinuousClock.Instant = .now) -> String? {
        guard let deadline = current else { return nil }
        let left = deadline - now
        let milliseconds = max(1, left.roundedUpMilliseconds)
        return "SET LOCAL statement_timeout = \(milliseconds)"
    }
}
