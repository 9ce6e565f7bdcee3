import SurveyDomain

/// When the work of the current request must be done by, if it has a deadline: set by the
/// API for each request, read here to bound the statements it runs (their
/// `statement_timeout` is what is left), so a request past its time is stopped by the
/// database itself instead of by a watchdog task per request.
public enum RequestDeadline {
    @TaskLocal public static var current: ContinuousClock.Instant?

    /// How much sooner than the client the server stops a request's statement.
    static let serverMargin = Duration.milliseconds(250)

    /// `SET LOCAL statement_timeout` for what is left of the deadline, less a margin (at
    /// least 1 ms), or nothing without a deadline.
    ///
    /// The client gives up on the server at the deadline itself (a partitioned or stopped
    /// server must not hold the request), abandoning the connection. The margin lets the
    /// server stop a merely slow statement first, cleanly: its error comes back in time,
    /// the answer names the cause (`/problems/timeout`) and the connection is kept.
    static func statementTimeoutSetting(now: ContinuousClock.Instant = .now) -> String? {
        statementTimeoutMilliseconds(until: current, now: now).map { "SET LOCAL statement_timeout = \($0)" }
    }

    /// The `statement_timeout`, in milliseconds, for what is left of `deadline` less the
    /// margin (at least 1 ms), or `nil` without a deadline.
    static func statementTimeoutMilliseconds(until deadline: ContinuousClock.Instant?, now: ContinuousClock.Instant = .now) -> Int64? {
        guard let deadline else { return nil }
        return max(1, (deadline - now - serverMargin).roundedUpMilliseconds)
    }
}
