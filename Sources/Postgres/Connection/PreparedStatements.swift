/// The statements one connection keeps prepared on the server, by SQL text.
///
/// A statement the program runs again is then parsed, analysed (row-level security
/// policies included) and planned once per connection rather than on every call: for a
/// short read that is most of the server's work (see `docs/BENCHMARKS.md`).
///
/// Bounded: past `capacity` names, new texts run unnamed, parsed each time, rather than
/// evicting older ones. Eviction would need a `DEALLOCATE` statement of its own, which an
/// aborted transaction refuses; and the texts that get here are the program's own, one per
/// call site, far fewer than the bound. The bound only stops a program that builds texts
/// anew each time from filling the server's memory.
///
/// A pure value: the connection asks it what to send and tells it what the server said.
struct PreparedStatements {
    /// What to send for one statement.
    enum Plan: Equatable {
        /// Already prepared under this name: bind and execute it.
        case execute(name: String)
        /// Prepare it under this name first, in the same round trip, then execute it;
        /// report the outcome with `prepared(_:as:succeeded:)`.
        case prepare(name: String)
        /// Parse it as the unnamed statement, as if there were no cache.
        case unnamed
    }

    let capacity: Int
    private var names: [String: String] = [:]
    /// Texts whose prepare has been sent but not answered yet: the same text later in the
    /// same segment of a pipeline executes that name (if the prepare fails, the segment
    /// stops there anyway) instead of being prepared a second time under another. A later
    /// segment runs the text unnamed (`PostgresConnection.executeSegments`).
    private var pending: [String: String] = [:]
    /// Names handed out but not created (their prepare failed), for the next text.
    private var freeNames: [String] = []
    /// Names created on the server, including ones forgotten after a stale plan (they stay
    /// allocated until the connection closes, so they count against the bound).
    private var allocated = 0

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// How many texts are prepared and usable now.
    var count: Int { names.count }

    mutating func plan(for sql: String) -> Plan {
        if let name = names[sql] ?? pending[sql] { return .execute(name: name) }
        let name: String
        if let free = freeNames.popLast() {
            name = free
        } else {
            guard allocated < capacity else { return .unnamed }
            allocated += 1
            name = "_p\(allocated)"
        }
        pending[sql] = name
        return .prepare(name: name)
    }

    /// Records whether the server created `name` for `sql`. It does not when the prepare
    /// fails or is skipped (a pipeline stopped by an earlier error); the name is then free.
    mutating func prepared(_ sql: String, as name: String, succeeded: Bool) {
        pending[sql] = nil
        if succeeded {
            names[sql] = name
        } else {
            freeNames.append(name)
        }
    }

    /// Stops using the statement for `sql`: its plan went stale in a way the server does
    /// not repair by itself (a table's column changed type under it, SQLSTATE 0A000).
    /// The next call prepares it afresh under a new name.
    mutating func forget(_ sql: String) {
        names[sql] = nil
    }
}
