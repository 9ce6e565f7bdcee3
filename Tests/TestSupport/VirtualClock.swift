import Synchronization

/// A clock whose time moves only when a test moves it, or when something sleeps on it
/// (the sleep returns at once, with the time moved to its deadline). Timing code driven by
/// it is deterministic: a test asserts on exact instants, whatever the machine's load.
public final class VirtualClock: Clock, Sendable {
    public struct Instant: InstantProtocol {
        public var offset: Duration
        public func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        public func duration(to other: Instant) -> Duration { other.offset - offset }
        public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
    }

    private let time = Mutex(Duration.zero)

    public init() {}

    public var now: Instant { Instant(offset: time.withLock { $0 }) }
    public var minimumResolution: Duration { .nanoseconds(1) }

    public func advance(by duration: Duration) {
        time.withLock { $0 += duration }
    }

    public func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        try Task.checkCancellation()
        time.withLock { $0 = max($0, deadline.offset) }
    }
}
