import DequeModule

/// The connection pool's decisions, with no I/O, no locks and no clock reads: every event
/// comes in with the current instant and every effect goes out as an `Action` for the
/// driver (`PostgresClient`) to carry out. Generic over the clock so tests can drive time.
///
/// Invariant: `idle.count + leased.count + connecting <= configuration.maximumConnections`.
struct PoolStateMachine<Clock: _Concurrency.Clock> where Clock.Duration == Duration {
    typealias Instant = Clock.Instant
    typealias ConnectionID = Int
    typealias RequestID = Int

    struct Configuration: Sendable {
        var minimumConnections: Int
        var maximumConnections: Int
        /// Requests allowed to wait for a connection; one more fails at once.
        var maximumWaiters: Int
        /// How long a request may wait for a connection before failing.
        var waitTimeout: Duration
        /// Idle connections above the minimum are closed after this long.
        var idleTimeout: Duration
        /// Delay before reconnecting after the first failed attempt, doubling up to `maximumBackoff`.
        var initialBackoff: Duration
        var maximumBackoff: Duration
    }

    enum Failure: Equatable, Sendable {
        case timeout, exhausted, unavailable, shutDown, cancelled
    }

    enum Action: Equatable {
        case lease(ConnectionID, to: RequestID)
        case fail(RequestID, Failure)
        case createConnection
        case close(ConnectionID)
        /// Call `retryDue(now:)` at this instant: requests wait and the backoff ends then.
        case scheduleRetry(at: Instant)
        /// Call `deadlinesDue(scheduledFor:now:)` at this instant, the earliest waiter's
        /// deadline. One is pending at a time, unless a waiter arrives whose deadline is
        /// earlier than the pending one's; a superseded one is harmless when it comes.
        case scheduleDeadlines(at: Instant)
    }

    private struct Waiter {
        var id: RequestID
        var deadline: Instant
    }

    let configuration: Configuration
    private var idle: [(id: ConnectionID, since: Instant)] = []
    private(set) var leased: Set<ConnectionID> = []
    /// Leased connections to a server that has since gone away or stopped being the
    /// primary (`serverChanged`): closed when they come back, never handed out again.
    private var stale: Set<ConnectionID> = []
    /// Counts the times the server was found changed; each open connection remembers the
    /// count when it was opened, so that news from a connection already known to be to the
    /// old server (they fail one by one, over a request timeout) does not drop again the
    /// connections just made to the new one.
    private var generation = 0
    private var generations: [ConnectionID: Int] = [:]
    private(set) var connecting = 0
    private var waiters: Deque<Waiter> = []
    /// When the pending `scheduleDeadlines` is due, if one is.
    private var deadlinesScheduledFor: Instant?
    private var consecutiveFailures = 0
    private var retryNotBefore: Instant?
    private(set) var isShutDown = false

    init(configuration: Configuration) {
        precondition(configuration.maximumConnections >= 1)
        precondition(configuration.minimumConnections <= configuration.maximumConnections)
        self.configuration = configuration
    }

    var idleCount: Int { idle.count }
    var waitingCount: Int { waiters.count }
    var totalConnections: Int { idle.count + leased.count + connecting }
    /// All connections closed and none being opened: the driver may stop.
    var isDrained: Bool { isShutDown && leased.isEmpty && connecting == 0 && idle.isEmpty }

    private func isBackingOff(at now: Instant) -> Bool {
        guard let retryNotBefore else { return false }
        return now < retryNotBefore
    }

    // MARK: Events

    /// A request wants a connection; if it has to wait, it fails at `waitTimeout`, or at
    /// its own `deadline` if that comes first.
    mutating func leaseRequested(_ request: RequestID, now: Instant, deadline: Instant? = nil) -> [Action] {
        if isShutDown { return [.fail(request, .shutDown)] }
        // Hand out the most recently used idle connection: the others can then age out.
        if let connection = idle.popLast() {
            leased.insert(connection.id)
            return [.lease(connection.id, to: request)]
        }
        if waiters.count >= configuration.maximumWaiters { return [.fail(request, .exhausted)] }
        // Out of time already: waiting, or opening a connection for it, would be for nothing.
        if let deadline, deadline <= now { return [.fail(request, .timeout)] }
        var actions: [Action] = []
        if totalConnections < configuration.maximumConnections, connecting < waiters.count + 1 {
            if isBackingOff(at: now) {
                // The database was unreachable a moment ago and nothing is open: say so now
                // rather than let callers queue up behind a server that is down.
                if totalConnections == 0 { return [.fail(request, .unavailable)] }
            } else {
                connecting += 1
                actions.append(.createConnection)
            }
        }
        let waitEnds = now.advanced(by: configuration.waitTimeout)
        let waiter = Waiter(id: request, deadline: deadline.map { min($0, waitEnds) } ?? waitEnds)
        waiters.append(waiter)
        if deadlinesScheduledFor.map({ waiter.deadline < $0 }) ?? true {
            deadlinesScheduledFor = waiter.deadline
            actions.append(.scheduleDeadlines(at: waiter.deadline))
        }
        return actions
    }

    mutating func connectionEstablished(_ connection: ConnectionID, now: Instant) -> [Action] {
        connecting -= 1
        consecutiveFailures = 0
        retryNotBefore = nil
        if isShutDown { return [.close(connection)] }
        generations[connection] = generation
        return handOver(connection, now: now)
    }

    mutating func connectionFailed(now: Instant) -> [Action] {
        connecting -= 1
        consecutiveFailures += 1
        retryNotBefore = now.advanced(by: backoff(afterFailures: consecutiveFailures))
        guard totalConnections == 0 else {
            // Others are open: waiters may get one of those when it comes back, and a new
            // attempt is made for them once the backoff ends.
            return waiters.isEmpty ? [] : [.scheduleRetry(at: retryNotBefore!)]
        }
        // Nothing is open and the server refused us: fail the waiters fast.
        let failed = waiters
        waiters.removeAll()
        return failed.map { .fail($0.id, .unavailable) }
    }

    /// A leased connection comes back; `reusable` is false when it is broken or still
    /// inside a transaction, in which case it is closed and never handed out again.
    mutating func connectionReleased(_ connection: ConnectionID, reusable: Bool, now: Instant) -> [Action] {
        guard leased.remove(connection) != nil else { return [] }
        let wasStale = stale.remove(connection) != nil
        if !reusable || isShutDown || wasStale {
            generations[connection] = nil
            var actions: [Action] = [.close(connection)]
            if !isShutDown, !waiters.isEmpty, connecting < waiters.count {
                if isBackingOff(at: now) {
                    actions.append(.scheduleRetry(at: retryNotBefore!))
                } else {
                    connecting += 1
                    actions.append(.createConnection)
                }
            }
            return actions
        }
        return handOver(connection, now: now)
    }

    /// `connection` found the server gone, silent or no longer the primary (a restart, a
    /// partition, a failover): the others opened before it learned so, to the same server,
    /// are likely no better. The idle ones close now, the leased ones when they come back;
    /// new ones find the server afresh (with several hosts in the URL, the new primary).
    /// Nothing happens when `connection` was opened before an earlier such news: the pool
    /// has already moved on.
    mutating func serverChanged(seenBy connection: ConnectionID) -> [Action] {
        guard generations[connection] == generation else { return [] }
        generation += 1
        stale = leased
        let actions = idle.map { Action.close($0.id) }
        for entry in idle { generations[entry.id] = nil }
        idle.removeAll()
        return actions
    }

    /// A `scheduleDeadlines(at: scheduled)` came due: the waiters whose deadline has passed
    /// fail, and the next deadline is scheduled unless one earlier is already pending.
    mutating func deadlinesDue(scheduledFor scheduled: Instant, now: Instant) -> [Action] {
        if deadlinesScheduledFor == scheduled { deadlinesScheduledFor = nil }
        var actions: [Action] = []
        waiters.removeAll { waiter in
            guard waiter.deadline <= now else { return false }
            actions.append(.fail(waiter.id, .timeout))
            return true
        }
        if let earliest = waiters.lazy.map(\.deadline).min(), deadlinesScheduledFor.map({ earliest < $0 }) ?? true {
            deadlinesScheduledFor = earliest
            actions.append(.scheduleDeadlines(at: earliest))
        }
        return actions
    }

    mutating func requestCancelled(_ request: RequestID) -> [Action] {
        guard let index = waiters.firstIndex(where: { $0.id == request }) else { return [] }
        waiters.remove(at: index)
        return [.fail(request, .cancelled)]
    }

    /// A scheduled retry is due: open connections for the requests still waiting.
    mutating func retryDue(now: Instant) -> [Action] {
        if isShutDown || isBackingOff(at: now) { return [] }
        return openForWaiters()
    }

    private mutating func openForWaiters() -> [Action] {
        var actions: [Action] = []
        while connecting < waiters.count, totalConnections < configuration.maximumConnections {
            connecting += 1
            actions.append(.createConnection)
        }
        return actions
    }

    /// Periodic upkeep: close connections idle too long above the minimum, open connections
    /// up to the minimum and for waiting requests (once any backoff has passed).
    mutating func tick(now: Instant) -> [Action] {
        if isShutDown { return [] }
        var actions: [Action] = []
        // `idle` is ordered oldest first.
        while totalConnections > configuration.minimumConnections, let oldest = idle.first,
            oldest.since.advanced(by: configuration.idleTimeout) <= now
        {
            idle.removeFirst()
            generations[oldest.id] = nil
            actions.append(.close(oldest.id))
        }
        if !isBackingOff(at: now) {
            while totalConnections < configuration.minimumConnections {
                connecting += 1
                actions.append(.createConnection)
            }
            actions += openForWaiters()
        }
        return actions
    }

    /// Stops handing out connections: waiters fail, idle connections close, leased ones
    /// close when they come back.
    mutating func shutDown() -> [Action] {
        guard !isShutDown else { return [] }
        isShutDown = true
        var actions: [Action] = waiters.map { .fail($0.id, .shutDown) }
        waiters.removeAll()
        actions += idle.map { .close($0.id) }
        for entry in idle { generations[entry.id] = nil }
        idle.removeAll()
        return actions
    }

    // MARK: Helpers

    private mutating func handOver(_ connection: ConnectionID, now: Instant) -> [Action] {
        if let waiter = waiters.popFirst() {
            leased.insert(connection)
            return [.lease(connection, to: waiter.id)]
        }
        idle.append((connection, now))
        return []
    }

    func backoff(afterFailures failures: Int) -> Duration {
        var delay = configuration.initialBackoff
        for _ in 1..<max(failures, 1) {
            delay = delay * 2
            if delay >= configuration.maximumBackoff { return configuration.maximumBackoff }
        }
        return min(delay, configuration.maximumBackoff)
    }
}
