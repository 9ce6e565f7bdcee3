import Synchronization

/// Guards a connection against two tasks using it at once. libpq's `PGconn` is not
/// thread-safe: two statements interleaved on it corrupt the protocol state silently, or
/// crash somewhere far from the cause. The pool leases a connection to one task at a time,
/// so a second user is a bug in the caller; it stops the program at once, naming what
/// both were doing, rather than racing libpq.
final class ExclusiveUse: Sendable {
    private let holder = Mutex<StaticString?>(nil)

    /// Marks the connection as in use for `operation`, or stops the program if it already is.
    func enter(_ operation: StaticString) {
        let current = holder.withLock { holder -> StaticString? in
            if let current = holder { return current }
            holder = operation
            return nil
        }
        if let current {
            fatalError("PostgresConnection used by two tasks at once: \(operation) while \(current) is running")
        }
    }

    func leave() {
        holder.withLock { $0 = nil }
    }
}
