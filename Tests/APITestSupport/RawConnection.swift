import NIOCore
import NIOPosix

/// A TCP connection to a live server that writes bytes exactly as given: for what an HTTP
/// client library would refuse to send (odd framing, a body trickled byte by byte).
public struct RawConnection: Sendable {
    let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>

    public static func open(port: Int, host: String = "127.0.0.1") async throws -> RawConnection {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return RawConnection(channel: channel)
    }

    public func write(_ text: String) async throws {
        try await channel.channel.writeAndFlush(ByteBuffer(string: text))
    }

    /// Everything the server sends until it closes the connection, or until `timeout`
    /// (then `closed` is false).
    public func readUntilClosed(timeout: Duration) async throws -> (text: String, closed: Bool) {
        try await channel.executeThenClose { inbound, _ in
            try await withThrowingTaskGroup(of: (String, Bool)?.self) { group in
                group.addTask {
                    var text = ""
                    do {
                        for try await buffer in inbound { text += String(buffer: buffer) }
                    } catch let error as IOError where error.errnoCode == ECONNRESET {
                        // Closed by a reset rather than an end of stream: closed all the same.
                    }
                    return (text, true)
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                defer { group.cancelAll() }
                while let result = try await group.next() {
                    if let result { return result }
                    // Timed out: closing ends the reading task, which returns what it had.
                    try? await channel.channel.close()
                    let partial = try await group.next() ?? nil
                    return (partial?.0 ?? "", false)
                }
                return ("", false)
            }
        }
    }

    public func close() async {
        try? await channel.channel.close()
    }
}
