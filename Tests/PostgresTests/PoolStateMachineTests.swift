import Testing

@testable import Postgres

/// A clock the test moves by hand, so every timing decision of the pool is deterministic.
struct ManualClock: Clock {
    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        func duration(to other: Instant) -> Duration { other.offset - offset }
        static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
    }
    var now = Instant(offset: .zero)
    var minimumResolution: Duration { .nanoseconds(1) }
    func sleep(until deadline: Instant, tolerance: Duration?) async throws {}
}

@Suite struct PoolStateMachineTests {
    typealias Machine = PoolStateMachine<ManualClock>
    let t0 = ManualClock.Instant(offset: .zero)

    func machine(min: Int = 0, max: Int = 2, waiters: Int = 10) -> Machine {
        Machine(configuration: .init(
            minimumConnections: min, maximumConnections: max, maximumWaiters: waiters,
            waitTimeout: .seconds(5), idleTimeout: .seconds(60),
            initialBackoff: .milliseconds(100), maximumBackoff: .seconds(2)))
    }

    func at(_ seconds: Double) -> ManualClock.Instant { t0.advanced(by: .milliseconds(Int(seconds * 1000))) }

    @Test func opensOnDemandThenReusesIdleConnection() {
        var pool = machine()
        #expect(pool.leaseRequested(1, now: t0) == [.createConnection, .scheduleDeadlines(at: at(5))])
        #expect(pool.connectionEstablished(100, now: t0) == [.lease(100, to: 1)])
        #expect(pool.connectionReleased(100, reusable: true, now: t0) == [])
        #expect(pool.leaseRequested(2, now: t0) == [.lease(100, to: 2)])
        #expect(pool.totalConnections == 1)
    }

    @Test func neverOpensMoreThanTheMaximumAndServesWaitersFirstInFirstOut() {
        var pool = machine(max: 2)
        _ = pool.leaseRequested(1, now: t0)
        _ = pool.leaseRequested(2, now: t0)
        #expect(pool.connecting == 2)
        // A third request waits without opening a third connection (nor scheduling another
        // look at the deadlines: one is pending for the first, which ends no later).
        #expect(pool.leaseRequested(3, now: t0) == [])
        _ = pool.leaseRequested(4, now: t0)
        #expect(pool.connectionEstablished(100, now: t0) == [.lease(100, to: 1)])
        #expect(pool.connectionEstablished(101, now: t0) == [.lease(101, to: 2)])
        #expect(pool.connectionReleased(101, reusable: true, now: t0) == [.lease(101, to: 3)])
        #expect(pool.connectionReleased(100, reusable: true, now: t0) == [.lease(100, to: 4)])
        #expect(pool.totalConnections == 2)
    }

    @Test func waiterTimesOut() {
        var pool = machine(max: 1)
        _ = pool.leaseRequested(1, now: t0)
        _ = pool.connectionEstablished(100, now: t0)
        _ = pool.leaseRequested(2, now: at(1))
        // Due for the first request's deadline (served since): the second's is later.
        #expect(pool.deadlinesDue(scheduledFor: at(5), now: at(5)) == [.scheduleDeadlines(at: at(6))])
        #expect(pool.deadlinesDue(scheduledFor: at(6), now: at(6)) == [.fail(2, .timeout)])
        // A late look finds nothing to do.
        #expect(pool.deadlinesDue(scheduledFor: at(6), now: at(7)) == [])
        #expect(pool.waitingCount == 0)
    }

    @Test func aCallersOwnEarlierDeadlineEndsItsWait() {
        var pool = machine(max: 1)
        _ = pool.leaseRequested(1, now: t0)
        _ = pool.connectionEstablished(100, now: t0)
        #expect(pool.leaseRequested(2, now: t0) == [])
        // A request with half a second left: looked at then, before the pending 5 s.
        #expect(pool.leaseRequested(3, now: t0, deadline: at(0.5)) == [.scheduleDeadlines(at: at(0.5))])
        // A deadline later than the wait timeout does not lengthen the wait.
        #expect(pool.leaseRequested(4, now: t0, deadline: at(60)) == [])
        // One already past fails at once rather than wait.
        #expect(pool.leaseRequested(5, now: at(0.2), deadline: at(0.1)) == [.fail(5, .timeout)])
        // The machine keeps one pending look only, so it asks again for 5 s (the look asked
        // for first also comes, and finds nothing left to do).
        #expect(pool.deadlinesDue(scheduledFor: at(0.5), now: at(0.5)) == [.fail(3, .timeout), .scheduleDeadlines(at: at(5))])
        #expect(pool.deadlinesDue(scheduledFor: at(5), now: at(5)) == [.fail(2, .timeout), .fail(4, .timeout)])
        #expect(pool.deadlinesDue(scheduledFor: at(5), now: at(5)) == [])
        #expect(pool.waitingCount == 0)
    }

    @Test func fullWaitQueueFailsAtOnce() {
        var pool = machine(max: 1, waiters: 1)
        _ = pool.leaseRequested(1, now: t0)
        _ = pool.leaseRequested(2, now: t0)
        #expect(pool.leaseRequested(3, now: t0) == [.fail(3, .exhausted)])
    }

    @Test func cancelledWaiterLeavesTheQueue() {
        var pool = machine(max: 1)
        _ = pool.leaseRequested(1, now: t0)
        _ = pool.connectionEstablished(100, now: t0)
        _ = pool.leaseRequested(2, now: t0)
        _ = pool.leaseRequested(3, now: t0)
        #expect(pool.requestCancelled(2) == [.fail(2, .cancelled)])
        #expect(pool.connectionReleased(100, reusable: true, now: t0) == [.lease(100, to: 3)])
    }

    @Test func brokenOrInTransactionConnectionIsClosedAndReplacedForWaiters() {
        var pool = machine(max: 1)
        _ = pool.leaseRequested(1, now: t0)
        _ = pool.connectionEstablished(100, now: t0)
        _ = pool.leaseRequested(2, now: t0)
        #expect(pool.connectionReleased(100, reusable: false, now: t0) == [.close(100), .createConnection])
        #expect(pool.connectionEstablished(101, now: t0) == [.lease(101, to: 2)])
        // Released a second time (a bug in a caller) changes nothing.
        #expect(pool.connectionReleased(100, reusable: true, now: t0) == [])
    }

    @Test func serverDownFailsWaitersFastAndBacksOffExponentially() {
        var pool = machine(max: 2)
        _ = pool.leaseRequested(1, now: t0)
        #expect(pool.connectionFailed(now: t0) == [.fail(1, .unavailable)])
        // Within the backoff nothing is tried and callers hear so at once.
        #expect(pool.leaseRequested(2, now: at(0.05)) == [.fail(2, .unavailable)])
        // After it, a new attempt.
        // (The deadlines are looked at for the first request at 5 s, which is pending.)
        #expect(pool.leaseRequested(3, now: at(0.1)) == [.createConnection])
        _ = pool.connectionFailed(now: at(0.1))
        #expect(pool.leaseRequested(4, now: at(0.25)) == [.fail(4, .unavailable)])  // 200 ms backoff now
        #expect(pool.backoff(afterFailures: 3) == .milliseconds(400))
        #expect(pool.backoff(afterFailures: 30) == .seconds(2))
        // The server is back: the first success resets the backoff.
        _ = pool.leaseRequested(5, now: at(0.3))
        _ = pool.connectionEstablished(100, now: at(0.3))
        _ = pool.connectionReleased(100, reusable: false, now: at(0.3))
        #expect(pool.leaseRequested(6, now: at(0.3)) == [.createConnection])
    }

    @Test func waitersAreServedByANewAttemptOnceTheBackoffEnds() {
        var pool = machine(max: 2)
        _ = pool.leaseRequested(1, now: t0)
        _ = pool.connectionEstablished(100, now: t0)
        // A second request opens a second connection, which fails while the first is out.
        #expect(pool.leaseRequested(2, now: t0) == [.createConnection])
        #expect(pool.connectionFailed(now: t0) == [.scheduleRetry(at: at(0.1))])
        // The first comes back broken during the backoff: closed, and the retry stands.
        #expect(pool.connectionReleased(100, reusable: false, now: at(0.05)) == [.close(100), .scheduleRetry(at: at(0.1))])
        #expect(pool.retryDue(now: at(0.05)) == [])
        #expect(pool.retryDue(now: at(0.1)) == [.createConnection])
        #expect(pool.connectionEstablished(101, now: at(0.2)) == [.lease(101, to: 2)])
        // Nobody waits any more: nothing to retry.
        #expect(pool.retryDue(now: at(1)) == [])
    }

    @Test func tickKeepsTheMinimumAndClosesConnectionsIdleTooLong() {
        var pool = machine(min: 1, max: 3)
        #expect(pool.tick(now: t0) == [.createConnection])
        #expect(pool.tick(now: t0) == [])  // already opening
        _ = pool.connectionEstablished(100, now: t0)
        _ = pool.leaseRequested(1, now: t0)
        _ = pool.leaseRequested(2, now: t0)
        _ = pool.connectionEstablished(101, now: t0)
        _ = pool.connectionReleased(100, reusable: true, now: at(1))
        _ = pool.connectionReleased(101, reusable: true, now: at(2))
        #expect(pool.tick(now: at(30)) == [])
        // The oldest idle connection goes first, and the minimum stays.
        #expect(pool.tick(now: at(62)) == [.close(100)])
        #expect(pool.tick(now: at(200)) == [])
        #expect(pool.totalConnections == 1)
    }

    @Test func shutdownFailsWaitersAndClosesEverything() {
        var pool = machine(max: 1)
        _ = pool.leaseRequested(1, now: t0)
        _ = pool.connectionEstablished(100, now: t0)
        _ = pool.leaseRequested(2, now: t0)
        #expect(pool.shutDown() == [.fail(2, .shutDown)])
        #expect(!pool.isDrained)
        #expect(pool.connectionReleased(100, reusable: true, now: t0) == [.close(100)])
        #expect(pool.isDrained)
        #expect(pool.leaseRequested(3, now: t0) == [.fail(3, .shutDown)])
    }

    /// Issue 17: a connection that finds the server changed drops the others opened before
    /// (idle ones at once, leased ones when they come back), but news from a connection
    /// already known to be to the old server drops nothing more: the connections made to
    /// the new primary meanwhile stay.
    @Test func aChangedServerDropsTheOlderConnectionsOnce() {
        var pool = machine(max: 3)
        _ = pool.leaseRequested(1, now: t0)
        _ = pool.leaseRequested(2, now: t0)
        _ = pool.leaseRequested(3, now: t0)
        _ = pool.connectionEstablished(100, now: t0)
        _ = pool.connectionEstablished(101, now: t0)
        _ = pool.connectionEstablished(102, now: t0)
        #expect(pool.connectionReleased(102, reusable: true, now: t0) == [])
        // 100 finds the server gone: idle 102 closes now; leased 101 is stale.
        #expect(pool.serverChanged(seenBy: 100) == [.close(102)])
        #expect(pool.connectionReleased(100, reusable: false, now: t0) == [.close(100)])
        // A new connection, to the new server.
        _ = pool.leaseRequested(4, now: t0)
        #expect(pool.connectionEstablished(103, now: t0) == [.lease(103, to: 4)])
        #expect(pool.connectionReleased(103, reusable: true, now: t0) == [])
        // 101, of the old server, fails in its turn: nothing more is dropped.
        #expect(pool.serverChanged(seenBy: 101) == [])
        // Though it looks reusable, 101 is closed as it comes back; 103 is handed out.
        #expect(pool.connectionReleased(101, reusable: true, now: t0) == [.close(101)])
        #expect(pool.leaseRequested(5, now: t0) == [.lease(103, to: 5)])
        // News from 103 (of the new generation) drops again.
        #expect(pool.serverChanged(seenBy: 103) == [])
        #expect(pool.connectionReleased(103, reusable: true, now: t0) == [.close(103)])
    }
}
