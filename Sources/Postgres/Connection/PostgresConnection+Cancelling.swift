import CLibPQ
import Foundation
import Logging
import Synchronization

/// Cancelling: a statement cancelled with its task is stopped on the server (`PQcancel`),
/// and a cancel request still on its way never lands on a later statement.
extension PostgresConnection {
    /// Runs `work`; cancelling the calling task cancels what runs on the server
    /// (`PQcancel`), or, if it has not started yet, keeps it from starting. Work that has
    /// started runs to its end, reading every result, so the connection is left clean.
    /// (Transaction control is never cancellable: `control(_:)`.)
    func cancellably<Result: Sendable>(
        _ work: () async throws(PostgresError) -> Result
    ) async throws -> Result {
        try Task.checkCancellation()
        let ticket = nextTicket.wrappingAdd(1, ordering: .relaxed).newValue
        return try await withTaskCancellationHandler { () async throws(PostgresError) -> Result in
            while true {
                let started = try self.inFlight.withLock { state throws(PostgresError) -> Bool in
                    if state.cancelledBeforeStart == ticket {
                        throw PostgresError(code: .server, sqlState: PostgresError.SQLState.queryCanceled, message: "cancelled before it started")
                    }
                    guard !state.delivering else { return false }
                    state.running = ticket
                    return true
                }
                if started { break }
                await self.cancelDelivered()
            }
            defer { self.inFlight.withLock { $0.running = nil } }
            return try await work()
        } onCancel: {
            self.cancel(ticket: ticket)
        }
    }

    /// Suspends until no cancel request is on its way to the server, if one is: what is
    /// sent next must not be what it stops. (Returns at once in the usual case.) Bounded
    /// by the cancel timeout (`endDelivery(_:overdue:)`).
    func cancelDelivered() async {
        guard inFlight.withLock({ $0.delivering }) else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let landed = self.inFlight.withLock { state -> Bool in
                guard state.delivering else { return true }
                state.waitingForDelivery.append(continuation)
                return false
            }
            if landed { continuation.resume() }
        }
    }

    /// Asks the server to stop the statement `ticket`, from a thread of its own:
    /// `PQcancel` opens a connection and waits for the server, and the caller is whatever
    /// thread cancelled the task (often one of the cooperative pool's). Nothing waits on
    /// that thread but the connection's next statement, which suspends until it is done,
    /// or until the cancel timeout: `PQcancel` has no limit of its own (a server that
    /// accepts and never answers holds it), and a connection cannot wait on it forever.
    func cancel(ticket: UInt64) {
        guard cancelHandle != nil else { return }
        let delivery = inFlight.withLock { state -> UInt64? in
            guard state.running == ticket else {
                state.cancelledBeforeStart = ticket
                return nil
            }
            guard !state.delivering else { return nil }
            state.delivering = true
            state.deliveries += 1
            return state.deliveries
        }
        guard let delivery else { return }
        Thread.detachNewThread {
            self.sendCancelRequest()
            self.endDelivery(delivery, overdue: false)
        }
        Task { [timeout = timeouts.cancel] in
            try? await Task.sleep(for: timeout)
            self.endDelivery(delivery, overdue: true)
        }
    }

    /// Asks the server to stop what runs on this connection now (`PQcancel`: a connection of
    /// its own to the server, and a wait for its answer). Blocks: call it from a thread of
    /// its own, which also keeps the connection, and so its cancel object, alive meanwhile.
    func sendCancelRequest() {
        guard let cancelHandle else { return }
        var buffer = [CChar](repeating: 0, count: 256)
        _ = PQcancel(cancelHandle, &buffer, Int32(buffer.count))
    }

    /// The cancel request `delivery` has reached the server, or is overdue: either way the
    /// statements waiting for it go on. An overdue one might still land, on whatever runs
    /// then, so the connection is abandoned (those statements fail; the pool replaces it).
    private func endDelivery(_ delivery: UInt64, overdue: Bool) {
        let (ended, waiting) = inFlight.withLock { state -> (Bool, [CheckedContinuation<Void, Never>]) in
            guard state.delivering, state.deliveries == delivery else { return (false, []) }
            if overdue { poisoned.store(true, ordering: .releasing) }
            state.delivering = false
            defer { state.waitingForDelivery = [] }
            return (true, state.waitingForDelivery)
        }
        if ended, overdue {
            logger.warning("a cancel request did not reach the server in time; abandoning the connection", metadata: ["backend_pid": "\(backendPID)"])
        }
        for continuation in waiting { continuation.resume() }
    }
}
