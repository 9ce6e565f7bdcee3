import CLibPQ
import Foundation
import Synchronization

/// Waits for many connections' sockets at once, on one thread of its own, so that a
/// statement in flight holds no thread: the caller sends without blocking, suspends, and
/// is resumed when the server's answer arrives.
///
/// Before this, each pooled connection had a thread that sat in `poll` for its answer, and
/// every statement cost two thread hand-offs on top of the server's work: most of the time
/// `serve` spent on a short read (`docs/BENCHMARKS.md`). One thread watching every socket
/// (epoll) wakes once for all the answers that arrived together.
///
/// Process-wide, started on first use, like NIO's singleton event loop group.
final class SocketReactor: Sendable {
    static let shared = SocketReactor()

    enum Interest {
        case readable
        /// Readable or writable: waiting to send the rest of a long message, while still
        /// taking in what the server says, so neither side can fill its buffer and wait
        /// for the other.
        case readableOrWritable
    }

    /// How a wait ended.
    enum Outcome {
        /// The socket is ready, or has failed or hung up: the caller finds out which from libpq.
        case ready
        /// The deadline came first: the server said nothing in time.
        case timedOut
    }

    #if os(Linux)
    private struct Waiter {
        var continuation: CheckedContinuation<Outcome, Never>
        var deadline: ContinuousClock.Instant
    }

    private struct State {
        var waiters: [Int32: Waiter] = [:]
        /// When the reactor's thread wakes up by itself next (at most a second ahead; `nil`
        /// before its first wait). A waiter due earlier must wake it (`wakeup`) so it can
        /// time that one out.
        var sleepingUntil: ContinuousClock.Instant?
    }

    private let epoll: Int32
    /// An eventfd in the epoll set, written to wake the reactor when a wait is due sooner
    /// than it planned to wake.
    private let wakeup: Int32
    private let state = Mutex(State())
    private let clock = ContinuousClock()

    private init() {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(epoll >= 0, "epoll_create1 failed: errno \(errno)")
        wakeup = clibpq_epoll_add_wakeup(epoll)
        precondition(wakeup >= 0, "eventfd failed: errno \(errno)")
        Thread.detachNewThread { [self] in
            Thread.current.name = "pg-reactor"
            run()
        }
    }

    /// Returns once `descriptor` is ready for `interest` (or has failed or hung up), or
    /// `deadline` has passed, whichever comes first. One waiter per socket at a time: a
    /// connection has one user.
    ///
    /// Every wait has a deadline: a server that stops answering (a network partition, a
    /// backend stopped with `SIGSTOP`) must not hold its caller forever.
    func wait(for descriptor: Int32, _ interest: Interest, until deadline: ContinuousClock.Instant) async -> Outcome {
        await withCheckedContinuation { (continuation: CheckedContinuation<Outcome, Never>) in
            let waiter = Waiter(continuation: continuation, deadline: deadline)
            let (earlier, mustWake) = state.withLock { state in
                let earlier = state.waiters.updateValue(waiter, forKey: descriptor)
                guard state.sleepingUntil.map({ deadline < $0 }) ?? true else { return (earlier, false) }
                state.sleepingUntil = deadline
                return (earlier, true)
            }
            // Two waiters on one socket means two tasks share a connection, a bug above
            // this layer: wake the earlier one (it checks again) rather than lose it.
            earlier?.continuation.resume(returning: .ready)
            if mustWake { clibpq_wakeup_signal(wakeup) }
            if clibpq_epoll_arm(epoll, descriptor, interest == .readableOrWritable ? 1 : 0) != 0 {
                // Not a socket epoll can watch (closed under us): let the caller see the
                // failure from libpq rather than wait.
                state.withLock { $0.waiters.removeValue(forKey: descriptor) }?.continuation.resume(returning: .ready)
            }
        }
    }

    /// Forgets `descriptor` before its socket closes.
    func forget(_ descriptor: Int32) {
        _ = clibpq_epoll_forget(epoll, descriptor)
        state.withLock { $0.waiters.removeValue(forKey: descriptor) }?.continuation.resume(returning: .ready)
    }

    private func run() {
        var ready = [Int32](repeating: 0, count: 64)
        var timeout: Int32 = -1
        while true {
            let count = ready.withUnsafeMutableBufferPointer { clibpq_epoll_wait(epoll, $0.baseAddress!, Int32($0.count), timeout) }
            // Interrupted by a signal: wait again. Any other failure means the epoll
            // descriptor itself is broken, and every connection would hang: stop loudly.
            guard count >= 0 else {
                precondition(errno == EINTR, "epoll_wait failed: errno \(errno)")
                continue
            }
            let descriptors = ready.prefix(Int(count))
            if descriptors.contains(wakeup) { clibpq_wakeup_drain(wakeup) }
            let now = clock.now
            var resumed: [(CheckedContinuation<Outcome, Never>, Outcome)] = []
            timeout = state.withLock { state in
                for descriptor in descriptors {
                    if let waiter = state.waiters.removeValue(forKey: descriptor) { resumed.append((waiter.continuation, .ready)) }
                }
                // The waiters are few (one per connection in use), and most wake by their
                // socket: a scan for the expired and the next deadline costs less than a heap.
                var next: ContinuousClock.Instant?
                for (descriptor, waiter) in state.waiters {
                    if waiter.deadline <= now {
                        state.waiters[descriptor] = nil
                        resumed.append((waiter.continuation, .timedOut))
                    } else if next.map({ waiter.deadline < $0 }) ?? true {
                        next = waiter.deadline
                    }
                }
                // With no deadline sooner, wake up in a second anyway: a new wait whose
                // deadline is later than that (most: a request has seconds) then needs no
                // wake-up of its own, which would cost a write and a wake per statement.
                let inASecond = now.advanced(by: .seconds(1))
                let wake = min(next ?? inASecond, inASecond)
                state.sleepingUntil = wake
                // Rounded up to the next millisecond, so an early wake does not spin.
                return Int32(clamping: ((wake - now).nanoseconds + 999_999) / 1_000_000)
            }
            for (continuation, outcome) in resumed { continuation.resume(returning: outcome) }
        }
    }
    #else
    // Elsewhere (macOS for development), a thread per wait: correct, not fast.
    private init() {}

    func wait(for descriptor: Int32, _ interest: Interest, until deadline: ContinuousClock.Instant) async -> Outcome {
        await withCheckedContinuation { (continuation: CheckedContinuation<Outcome, Never>) in
            Thread.detachNewThread {
                var events = Int16(POLLIN)
                if interest == .readableOrWritable { events |= Int16(POLLOUT) }
                var pollDescriptor = pollfd(fd: descriptor, events: events, revents: 0)
                let left = ContinuousClock.now.duration(to: deadline)
                let ready = poll(&pollDescriptor, 1, Int32(clamping: max(0, (left.nanoseconds + 999_999) / 1_000_000)))
                continuation.resume(returning: ready == 0 ? .timedOut : .ready)
            }
        }
    }

    func forget(_ descriptor: Int32) {}
    #endif
}
