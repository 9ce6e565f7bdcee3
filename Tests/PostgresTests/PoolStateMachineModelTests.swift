import TestSupport
import Testing

@testable import Postgres

/// The pool's state machine driven by long random sequences of events, the way its driver
/// would deliver them (connections open or fail, come back broken or not, requests are
/// cancelled, time passes and the scheduled looks at the deadlines come due), checking
/// after every step what must always hold:
/// - never more connections than the maximum;
/// - every request ends once, leased or failed, and a connection serves one request at a time;
/// - a request never waits past its deadline: while any waits, a look is scheduled no later
///   than the earliest deadline;
/// - once time runs out, nobody is left waiting.
@Suite struct PoolStateMachineModelTests {
    typealias Machine = PoolStateMachine<ManualClock>
    typealias Instant = ManualClock.Instant

    /// What the driver knows, and what the model expects of the machine.
    struct Driver {
        var machine: Machine
        var now = Instant(offset: .zero)
        var opening = 0
        var nextConnection = 100
        var leasedTo: [Int: Int] = [:]  // connection → request
        var waiting: [Int: Instant] = [:]  // request → its deadline
        var ended: Set<Int> = []
        var looks: [Instant] = []
        var retries: [Instant] = []
        var failures: [String] = []

        mutating func apply(_ actions: [Machine.Action]) {
            for action in actions {
                switch action {
                case .lease(let connection, let request):
                    if leasedTo[connection] != nil { failures.append("connection \(connection) leased twice") }
                    if waiting.removeValue(forKey: request) == nil, ended.contains(request) {
                        failures.append("request \(request) ended twice")
                    }
                    ended.insert(request)
                    leasedTo[connection] = request
                case .fail(let request, let failure):
                    if let deadline = waiting.removeValue(forKey: request), failure == .timeout, now < deadline {
                        failures.append("request \(request) timed out before its deadline")
                    } else if ended.contains(request) {
                        failures.append("request \(request) ended twice")
                    }
                    ended.insert(request)
                case .createConnection:
                    opening += 1
                case .close(let connection):
                    if leasedTo[connection] != nil { failures.append("a leased connection closed") }
                case .scheduleRetry(let instant):
                    retries.append(instant)
                case .scheduleDeadlines(let instant):
                    looks.append(instant)
                }
            }
        }

        mutating func check() {
            if machine.totalConnections > machine.configuration.maximumConnections {
                failures.append("\(machine.totalConnections) connections")
            }
            if machine.waitingCount != waiting.count {
                failures.append("the machine has \(machine.waitingCount) waiting, the model \(waiting.count)")
            }
            if let earliest = waiting.values.min() {
                if earliest <= now { failures.append("a request waits past its deadline") }
                if !looks.contains(where: { $0 <= earliest }) { failures.append("no look scheduled for the earliest deadline") }
            }
        }
    }

    @Test(arguments: 0..<40)
    func randomEventSequencesKeepThePoolsPromises(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let maximum = Int.random(in: 1...4, using: &random)
        var driver = Driver(machine: Machine(configuration: .init(
            minimumConnections: Int.random(in: 0...maximum, using: &random), maximumConnections: maximum,
            maximumWaiters: Int.random(in: 1...8, using: &random), waitTimeout: .seconds(5), idleTimeout: .seconds(60),
            initialBackoff: .milliseconds(100), maximumBackoff: .seconds(2))))
        var nextRequest = 1
        for _ in 0..<400 {
            switch Int.random(in: 0..<100, using: &random) {
            case 0..<30:
                let request = nextRequest
                nextRequest += 1
                // Most without a deadline of their own, some with one, a few already past.
                let deadline: Instant? = Bool.random(using: &random)
                    ? nil : driver.now.advanced(by: .milliseconds(Int.random(in: -100...8000, using: &random)))
                let actions = driver.machine.leaseRequested(request, now: driver.now, deadline: deadline)
                let waitEnds = driver.now.advanced(by: .seconds(5))
                driver.waiting[request] = deadline.map { min($0, waitEnds) } ?? waitEnds
                driver.apply(actions)
            case 30..<45 where driver.opening > 0:
                driver.opening -= 1
                driver.nextConnection += 1
                driver.apply(driver.machine.connectionEstablished(driver.nextConnection, now: driver.now))
            case 45..<50 where driver.opening > 0:
                driver.opening -= 1
                driver.apply(driver.machine.connectionFailed(now: driver.now))
            case 50..<70 where !driver.leasedTo.isEmpty:
                let connection = driver.leasedTo.keys.randomElement(using: &random)!
                driver.leasedTo[connection] = nil
                driver.apply(driver.machine.connectionReleased(
                    connection, reusable: Int.random(in: 0..<5, using: &random) > 0, now: driver.now))
            case 70..<75 where !driver.waiting.isEmpty:
                let request = driver.waiting.keys.randomElement(using: &random)!
                driver.apply(driver.machine.requestCancelled(request))
            case 75..<90:
                driver.now = driver.now.advanced(by: .milliseconds(Int.random(in: 1...1500, using: &random)))
                driver.deliverDue()
            default:
                driver.apply(driver.machine.tick(now: driver.now))
            }
            driver.check()
            if !driver.failures.isEmpty { break }
        }
        // Time runs out: every look comes due, and nobody may be left waiting.
        driver.now = driver.now.advanced(by: .seconds(60))
        driver.deliverDue()
        driver.check()
        if driver.waiting.count > 0 { driver.failures.append("\(driver.waiting.count) still waiting at the end") }
        #expect(driver.failures.isEmpty, "seed \(seed): \(driver.failures.prefix(3))")
    }
}

extension PoolStateMachineModelTests.Driver {
    /// The looks and retries the driver's sleeping tasks would deliver by `now`, in time order
    /// (a look may schedule another, due too).
    mutating func deliverDue() {
        while let next = (looks + retries).filter({ $0 <= now }).min() {
            if let index = looks.firstIndex(of: next) {
                looks.remove(at: index)
                // The driver's task wakes at the instant it slept for (or later); "now" is that.
                apply(machine.deadlinesDue(scheduledFor: next, now: next))
            } else if let index = retries.firstIndex(of: next) {
                retries.remove(at: index)
                apply(machine.retryDue(now: next))
            }
        }
    }
}
