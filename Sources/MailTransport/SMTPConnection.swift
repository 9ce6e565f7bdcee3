import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// One SMTP session (RFC 5321): greeting, EHLO, STARTTLS, AUTH, then any number of mail
/// transactions, each pipelined when the server offers PIPELINING (RFC 2920). Every wait has
/// a limit; past it the connection is closed and the step named.
final class SMTPConnection: Sendable {
    let channel: any Channel
    let configuration: SMTPConfiguration
    /// The extensions of the last EHLO (after STARTTLS, the second one's).
    let extensions: [String: [String]]
    private let timedOutStep: NIOLockedValueBox<String?>

    private init(channel: any Channel, configuration: SMTPConfiguration, extensions: [String: [String]], timedOutStep: NIOLockedValueBox<String?>) {
        self.channel = channel
        self.configuration = configuration
        self.extensions = extensions
        self.timedOutStep = timedOutStep
    }

    var isActive: Bool { channel.isActive }

    static func connect(_ configuration: SMTPConfiguration, group: any EventLoopGroup) async throws -> SMTPConnection {
        let greeting = group.next().makePromise(of: SMTPReply.self)
        let tls = try configuration.security == .implicitTLS ? makeTLSHandler(configuration) : nil
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: greeting.futureResult.eventLoop)
                .connectTimeout(configuration.timeouts.connect)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls { try channel.pipeline.syncOperations.addHandler(tls) }
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(SMTPReplyDecoder()))
                        try channel.pipeline.syncOperations.addHandler(SMTPClientHandler(greeting: greeting))
                    }
                }
                .connect(host: configuration.host, port: configuration.port).get()
        } catch {
            greeting.fail(MailError(.connectionFailed, "\(error)"))
            throw MailError(.connectionFailed, "cannot connect to \(configuration.host):\(configuration.port): \(error)")
        }
        let timedOutStep = NIOLockedValueBox<String?>(nil)
        var connection = SMTPConnection(channel: channel, configuration: configuration, extensions: [:], timedOutStep: timedOutStep)
        do {
            let hello = try await connection.wait(for: greeting.futureResult, step: "the greeting", limit: configuration.timeouts.command)
            guard hello.code == 220 else { throw MailError(.refused, "the server does not take mail now", reply: hello) }
            var extensions = try await connection.hello()
            if case .startTLS(let required) = configuration.security {
                if extensions["STARTTLS"] != nil {
                    let ready = try await connection.command("STARTTLS")
                    guard ready.code == 220 else { throw MailError(.tlsUnavailable, "STARTTLS refused", reply: ready) }
                    // EHLO waits for the handshake to end: written with the client's last
                    // handshake flight, some servers (aiosmtpd) read it before their session
                    // restarts under TLS, and then ask for EHLO again.
                    let handshake = channel.eventLoop.makePromise(of: SMTPReply.self)
                    try await channel.pipeline.addHandlers([try makeTLSHandler(configuration), TLSHandshakeObserver(handshake)], position: .first)
                    connection = SMTPConnection(channel: channel, configuration: configuration, extensions: [:], timedOutStep: timedOutStep)
                    _ = try await connection.wait(for: handshake.futureResult, step: "the TLS handshake", limit: configuration.timeouts.command)
                    extensions = try await connection.hello()
                } else if required {
                    throw MailError(.tlsUnavailable, "the server does not offer STARTTLS, and credentials are never sent in clear")
                }
            }
            connection = SMTPConnection(channel: channel, configuration: configuration, extensions: extensions, timedOutStep: timedOutStep)
            if let credentials = configuration.credentials { try await connection.authenticate(credentials) }
            return connection
        } catch {
            connection.close()
            throw error
        }
    }

    private static func makeTLSHandler(_ configuration: SMTPConfiguration) throws -> NIOSSLClientHandler {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = configuration.trustRoots
        tls.minimumTLSVersion = .tlsv12
        do {
            let context = try NIOSSLContext(configuration: tls)
            let isAddress = (try? SocketAddress(ipAddress: configuration.host, port: 0)) != nil
            return try NIOSSLClientHandler(context: context, serverHostname: isAddress ? nil : configuration.host)
        } catch {
            throw MailError(.tlsUnavailable, "TLS cannot be set up: \(error)")
        }
    }

    private func hello() async throws -> [String: [String]] {
        let reply = try await command("EHLO \(configuration.clientName)")
        guard reply.code == 250 else { throw MailError(.refused, "EHLO refused", reply: reply) }
        return reply.extensions
    }

    /// AUTH PLAIN (RFC 4616) when offered, else LOGIN: both send the password once, inside TLS.
    private func authenticate(_ credentials: SMTPConfiguration.Credentials) async throws {
        let methods = extensions["AUTH"] ?? []
        let reply: SMTPReply
        if methods.contains("PLAIN") {
            let token = Data("\0\(credentials.user)\0\(credentials.password)".utf8).base64EncodedString()
            reply = try await command("AUTH PLAIN \(token)", logged: "AUTH PLAIN …")
        } else if methods.contains("LOGIN") {
            let user = try await command("AUTH LOGIN")
            guard user.code == 334 else { throw MailError(.authenticationFailed, "AUTH LOGIN refused", reply: user) }
            let password = try await command(Data(credentials.user.utf8).base64EncodedString(), logged: "(user)")
            guard password.code == 334 else { throw MailError(.authenticationFailed, "AUTH LOGIN refused the user", reply: password) }
            reply = try await command(Data(credentials.password.utf8).base64EncodedString(), logged: "(password)")
        } else {
            throw MailError(.authenticationFailed, "the server offers no AUTH method this client speaks (PLAIN, LOGIN): \(methods)")
        }
        guard reply.code == 235 else {
            throw MailError(reply.isTransient ? .refused : .authenticationFailed, "authentication refused", reply: reply)
        }
    }

    /// Sends one command and waits for its reply. `logged` replaces the command's text in
    /// error messages when it holds a secret.
    func command(_ line: String, logged: String? = nil) async throws -> SMTPReply {
        try await pipeline([line], logged: logged).first!
    }

    /// Writes every command at once, then waits for each reply in order.
    func pipeline(_ lines: [String], logged: String? = nil) async throws -> [SMTPReply] {
        var buffer = channel.allocator.buffer(capacity: 64)
        var futures: [EventLoopFuture<SMTPReply>] = []
        for line in lines {
            guard !line.contains("\r"), !line.contains("\n") else { throw MailError(.protocolViolation, "a command with a line break") }
            buffer.clear()
            buffer.writeString(line)
            buffer.writeString("\r\n")
            let promise = channel.eventLoop.makePromise(of: SMTPReply.self)
            channel.write(SMTPRequest(bytes: buffer, reply: promise), promise: nil)
            futures.append(promise.futureResult)
        }
        channel.flush()
        var replies: [SMTPReply] = []
        for (line, future) in zip(lines, futures) {
            let step = logged ?? String(line.prefix(while: { $0 != " " && $0 != ":" }))
            replies.append(try await wait(for: future, step: step, limit: configuration.timeouts.command))
        }
        return replies
    }

    /// Writes the message (dot-stuffed, ended by the lone dot) and waits for the server to take
    /// responsibility for it. From the moment this is called, a lost reply is uncertain.
    func data(_ message: ByteBuffer) async throws -> SMTPReply {
        let promise = channel.eventLoop.makePromise(of: SMTPReply.self)
        channel.writeAndFlush(SMTPRequest(bytes: Self.dotStuffed(message), reply: promise), promise: nil)
        return try await wait(for: promise.futureResult, step: "the end of the data", limit: configuration.timeouts.dataEnd)
    }

    /// RFC 5321 §4.5.2: a line starting with a dot gets one more; every line ends in CRLF
    /// (a bare LF becomes CRLF), and the data ends with CRLF.CRLF.
    static func dotStuffed(_ message: ByteBuffer) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(message.readableBytes + message.readableBytes / 64 + 8)
        var atLineStart = true
        var previous: UInt8 = 0
        for byte in message.readableBytesView {
            if byte == UInt8(ascii: "\n") && previous != UInt8(ascii: "\r") { out.writeInteger(UInt8(ascii: "\r")) }
            if atLineStart && byte == UInt8(ascii: ".") { out.writeInteger(UInt8(ascii: ".")) }
            out.writeInteger(byte)
            atLineStart = byte == UInt8(ascii: "\n")
            previous = byte
        }
        if !atLineStart { out.writeString("\r\n") }
        out.writeString(".\r\n")
        return out
    }

    private func wait(for future: EventLoopFuture<SMTPReply>, step: String, limit: TimeAmount) async throws -> SMTPReply {
        let timer = channel.eventLoop.scheduleTask(in: limit) { [channel, timedOutStep] in
            timedOutStep.withLockedValue { if $0 == nil { $0 = step } }
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        do {
            return try await future.get()
        } catch {
            if let step = timedOutStep.withLockedValue({ $0 }) {
                throw MailError(.timedOut, "no reply to \(step) within \(limit.nanoseconds / 1_000_000) ms")
            }
            throw error as? MailError ?? MailError(.connectionFailed, "\(error)")
        }
    }

    /// QUIT, politely and without waiting for the reply, then close.
    func quit() {
        guard channel.isActive else { return }
        var bytes = channel.allocator.buffer(capacity: 6)
        bytes.writeString("QUIT\r\n")
        channel.writeAndFlush(SMTPRequest(bytes: bytes, reply: nil)).whenComplete { [channel] _ in channel.close(promise: nil) }
    }

    func close() {
        channel.close(promise: nil)
    }
}

/// Completes its promise when the TLS handshake ends (with a stand-in reply: the wait shares
/// the connection's timeout), or fails it with the handshake's error.
private final class TLSHandshakeObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    private let promise: EventLoopPromise<SMTPReply>

    init(_ promise: EventLoopPromise<SMTPReply>) {
        self.promise = promise
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            promise.succeed(SMTPReply(code: 220, lines: ["TLS"]))
            context.pipeline.syncOperations.removeHandler(self, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(MailError(.tlsUnavailable, "the TLS handshake failed: \(error)"))
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(MailError(.tlsUnavailable, "the connection closed during the TLS handshake"))
        context.fireChannelInactive()
    }
}
