import NIOCore

/// What the connection writes: bytes to send and, when they end a command, the promise of
/// its reply. Replies come back in the order commands went out, so several commands may be
/// written before the first reply (PIPELINING, RFC 2920) and each still gets its own.
struct SMTPRequest {
    var bytes: ByteBuffer
    var reply: EventLoopPromise<SMTPReply>?
}

/// Pairs replies with the commands that asked for them. A reply nobody waits for (a server
/// closing with 421) and the end of the connection fail every command still waiting, so no
/// caller waits for ever.
final class SMTPClientHandler: ChannelDuplexHandler {
    typealias InboundIn = SMTPReply
    typealias OutboundIn = SMTPRequest
    typealias OutboundOut = ByteBuffer

    private var waiting = CircularBuffer<EventLoopPromise<SMTPReply>>()
    private var failure: MailError?

    /// The greeting arrives before any command: its promise waits from the start.
    init(greeting: EventLoopPromise<SMTPReply>) {
        waiting.append(greeting)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let reply = unwrapInboundIn(data)
        guard let promise = waiting.popFirst() else {
            // Unsolicited: typically "421 closing"; whatever comes next is refused with it.
            fail(MailError(.connectionFailed, "the server said \(reply) unasked", reply: reply), context: context)
            context.close(promise: nil)
            return
        }
        promise.succeed(reply)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let failure {
            request.reply?.fail(failure)
            promise?.fail(failure)
            return
        }
        if let reply = request.reply { waiting.append(reply) }
        context.write(wrapOutboundOut(request.bytes), promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(MailError(.connectionFailed, "the server closed the connection"), context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error as? MailError ?? MailError(.connectionFailed, "\(error)"), context: context)
        context.close(promise: nil)
    }

    private func fail(_ error: MailError, context: ChannelHandlerContext) {
        if failure == nil { failure = error }
        while let promise = waiting.popFirst() { promise.fail(error) }
    }
}
