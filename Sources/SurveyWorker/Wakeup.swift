import Synchronization

/// A doorbell: any number of rings while nobody waits make one wake-up, which is how a
/// burst of NOTIFYs (one per enqueueing transaction) is debounced. A ring wakes every
/// waiter (the worker's lanes).
final class Wakeup: Sendable {
    private struct State {
        var rung = false
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextID = 0
    }
    private let state = Mutex(State())

    func ring() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard !state.waiters.isEmpty else {
                state.rung = true
                return []
            }
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns when rung (at once if it rang while nobody waited), or after `timeout`.
    func wait(timeout: Duration) async {
        await withCheckedContinuation { continuation in
            let id = state.withLock { state -> Int? in
                if state.rung {
                    state.rung = false
                    return nil
                }
                state.nextID += 1
                state.waiters[state.nextID] = continuation
                return state.nextID
            }
            guard let id else {
                continuation.resume()
                return
            }
            Task {
                try? await Task.sleep(for: timeout)
                self.state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
            }
        }
    }
}
