import Logging
import Postgres

/// Rings `wakeup` on every NOTIFY on `channel`, on a dedicated connection; reconnects
/// after errors (polling covers the gap). Returns when its task is cancelled.
enum NotificationListener {
    static func listen(client: PostgresClient, channel: String, wakeup: Wakeup, logger: Logger) async {
        while !Task.isCancelled {
            do {
                let connection = try await client.makeDedicatedConnection()
                defer { Task { await connection.close() } }
                try await connection.listen(channel)
                while !Task.isCancelled {
                    if try await !connection.notifications(timeout: .milliseconds(500)).isEmpty { wakeup.ring() }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("LISTEN connection lost; polling until it is back", metadata: ["channel": "\(channel)", "error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }
}
