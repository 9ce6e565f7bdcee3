import Postgres
import Synchronization

/// What `GET /ready` reports: whether this process can serve requests now.
public struct Readiness: Sendable, Equatable {
    public var databaseReachable: Bool
    /// Whether every migration this build knows is applied (a newer schema is fine: a
    /// rolling deploy migrates before it replaces the old replicas).
    public var migrationsCurrent: Bool

    public var isReady: Bool { databaseReachable && migrationsCurrent }
}

extension Database {
    /// Asks the database, within `timeout` (a check that hangs is a failed check). The
    /// check runs in a task of its own and is abandoned (cancelled, not awaited) when the
    /// time is up: a database that stops answering can hold a connection attempt or a
    /// statement far longer than a probe may wait, and a task group would wait for it.
    public func readiness(migrator: Migrator, timeout: Duration = .seconds(2)) async -> Readiness {
        let notReady = Readiness(databaseReachable: false, migrationsCurrent: false)
        let answer = FirstAnswer<Readiness>()
        let check = Task {
            let readiness: Readiness
            do {
                readiness = try await client.withConnection { connection in
                    Readiness(databaseReachable: true, migrationsCurrent: try await migrator.isCurrent(on: connection))
                }
            } catch let error as PostgresError where !error.isUnavailable {
                // Reachable, but the migrations table is missing or unreadable: not migrated.
                readiness = Readiness(databaseReachable: true, migrationsCurrent: false)
            } catch {
                readiness = notReady
            }
            answer.give(readiness)
        }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            answer.give(notReady)
        }
        let readiness = await answer.value
        check.cancel()
        timer.cancel()
        return readiness
    }
}

/// The first of several answers given from different tasks; later ones are dropped.
final class FirstAnswer<Value: Sendable>: Sendable {
    private let state = Mutex<(value: Value?, waiter: CheckedContinuation<Value, Never>?)>((nil, nil))

    func give(_ value: Value) {
        let waiter = state.withLock { state -> CheckedContinuation<Value, Never>? in
            guard state.value == nil else { return nil }
            state.value = value
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: value)
    }

    var value: Value {
        get async {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Value? in
                    if let value = state.value { return value }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }
}
