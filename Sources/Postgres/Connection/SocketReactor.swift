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

    #if os(Linux)
    private let epoll: Int32
    private let waiters = Mutex<[Int32: CheckedContinuation<Void, Never>]>([:])

    private init() {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(epoll >= 0, "epoll_create1 failed: errno \(errno)")
        Thread.detachNewThread { [self] in
            Thread.current.name = "pg-reactor"
            run()
        }
    }

    /// Returns once `descriptor` is ready for `interest`, or has failed or hung up (the
    /// caller finds out which from libpq). One waiter per socket at a time: a connection
    /// has one user.
    func wait(for descriptor: Int32, _ interest: Interest) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            // Two waiters on one socket means two tasks share a connection, a bug above
            // this layer: wake the earlier one (it checks again) rather than lose it.
            waiters.withLock { $0.updateValue(continuation, forKey: descriptor) }?.resume()
            if clibpq_epoll_arm(epoll, descriptor, interest == .readableOrWritable ? 1 : 0) != 0 {
                // Not a socket epoll can watch (closed under us): let the caller see the
                // failure from libpq rather than wait forever.
                waiters.withLock { $0.removeValue(forKey: descriptor) }?.resume()
            }
        }
    }

    /// Forgets `descriptor` before its socket closes.
    func forget(_ descriptor: Int32) {
        _ = clibpq_epoll_forget(epoll, descriptor)
        waiters.withLock { $0.removeValue(forKey: descriptor) }?.resume()
    }

    private func run() {
        var ready = [Int32](repeating: 0, count: 64)
        while true {
            let count = ready.withUnsafeMutableBufferPointer { clibpq_epoll_wait(epoll, $0.baseAddress!, Int32($0.count)) }
            // Interrupted by a signal: wait again. Any other failure means the epoll
            // descriptor itself is broken, and every connection would hang: stop loudly.
            guard count >= 0 else {
                precondition(errno == EINTR, "epoll_wait failed: errno \(errno)")
                continue
            }
            let resumed = waiters.withLock { waiters in
                ready.prefix(Int(count)).compactMap { waiters.removeValue(forKey: $0) }
            }
            for continuation in resumed { continuation.resume() }
        }
    }
    #else
    // Elsewhere (macOS for development), a thread per wait: correct, not fast.
    private init() {}

    func wait(for descriptor: Int32, _ interest: Interest) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                var events = Int16(POLLIN)
                if interest == .readableOrWritable { events |= Int16(POLLOUT) }
                var pollDescriptor = pollfd(fd: descriptor, events: events, revents: 0)
                _ = poll(&pollDescriptor, 1, -1)
                continuation.resume()
            }
        }
    }

    func forget(_ descriptor: Int32) {}
    #endif
}
