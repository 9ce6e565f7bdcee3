import CLibPQ
import Foundation
import NIOPosix

/// LISTEN / NOTIFY on a connection of its own.
extension PostgresConnection {
    /// Subscribes this connection to `channel`. Use a dedicated connection for listening:
    /// notifications are only read while waiting in `notifications(timeout:)`.
    public func listen(_ channel: String) async throws {
        let sql = try await threadPool.runBlocking { () throws(PostgresError) -> String in
            guard let escaped = PQescapeIdentifier(self.handle, channel, channel.utf8.count) else {
                throw PostgresError(code: .encoding, message: "invalid channel name")
            }
            defer { PQfreemem(escaped) }
            return "LISTEN " + String(cString: escaped)
        }
        try await simpleQuery(sql)
    }

    /// Waits up to `timeout` for notifications and returns those that arrived (maybe none).
    public func notifications(timeout: Duration) async throws -> [PostgresNotification] {
        use.enter("a wait for notifications")
        defer { use.leave() }
        let milliseconds = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        return try await threadPool.runBlocking { () throws(PostgresError) -> [PostgresNotification] in
            var received = self.drainNotifications()
            if !received.isEmpty { return received }
            var descriptor = pollfd(fd: PQsocket(self.handle), events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, milliseconds)
            if ready > 0 {
                guard PQconsumeInput(self.handle) != 0 else {
                    throw PostgresError(code: .connectionClosed, message: String(cString: PQerrorMessage(self.handle)))
                }
            }
            received = self.drainNotifications()
            guard PQstatus(self.handle) == CONNECTION_OK else {
                throw PostgresError(code: .connectionClosed, message: String(cString: PQerrorMessage(self.handle)))
            }
            return received
        }
    }

    private func drainNotifications() -> [PostgresNotification] {
        var received: [PostgresNotification] = []
        while let notify = PQnotifies(handle) {
            let value = notify.pointee
            received.append(
                PostgresNotification(
                    channel: String(cString: value.relname),
                    payload: value.extra.map { String(cString: $0) } ?? "",
                    senderPID: value.be_pid))
            PQfreemem(notify)
        }
        return received
    }
}

/// A `NOTIFY` received on a listening connection.
public struct PostgresNotification: Sendable, Hashable {
    public var channel: String
    public var payload: String
    public var senderPID: Int32
}
