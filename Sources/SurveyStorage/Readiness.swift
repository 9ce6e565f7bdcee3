import Postgres

/// What `GET /ready` reports: whether this process can serve requests now.
public struct Readiness: Sendable, Equatable {
    public var databaseReachable: Bool
    /// Whether every migration this build knows is applied (a newer schema is fine: a
    /// rolling deploy migrates before it replaces the old replicas).
    public var migrationsCurrent: Bool

    public var isReady: Bool { databaseReachable && migrationsCurrent }
}

extension Database {
    /// Asks the database, within `timeout` (a check that hangs is a failed check).
    public func readiness(migrator: Migrator, timeout: Duration = .seconds(2)) async -> Readiness {
        let notReady = Readiness(databaseReachable: false, migrationsCurrent: false)
        return await withTaskGroup(of: Readiness?.self) { group in
            group.addTask {
                do {
                    return try await client.withConnection { connection in
                        Readiness(databaseReachable: true, migrationsCurrent: try await migrator.isCurrent(on: connection))
                    }
                } catch let error as PostgresError where !error.isUnavailable {
                    // Reachable, but the migrations table is missing or unreadable: not migrated.
                    return Readiness(databaseReachable: true, migrationsCurrent: false)
                } catch {
                    return notReady
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? notReady
        }
    }
}
