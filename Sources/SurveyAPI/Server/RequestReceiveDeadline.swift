import HummingbirdCore
import NIOCore
import NIOHTTPTypes

/// Bounds the time to receive a whole request, head and body: from its first byte to its
/// end, at most `timeout`. Past it the connection is answered `408` (if no response has
/// started) and closed. Without it a client sending a byte every few seconds keeps its
/// connection, and what it holds, for ever; and the webhooks read their body before they
/// can check its signature.
///
/// Two handlers share the watch: this one, first in the pipeline, sees the raw bytes (a
/// slow request head has not reached the HTTP decoder yet); `RequestEndObserver`, after
/// the decoder, sees where each request ends.
final class RequestReceiveDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer

    private let timeout: TimeAmount
    /// After a 408, how long the rest of a late request is read and dropped before the
    /// connection closes: closing at once with its bytes unread would reset the connection,
    /// and the client could lose the 408 it was sent (a "lingering close").
    private let linger: TimeAmount
    private var lingering = false
    private var deadline: Scheduled<Void>?
    /// Whether any of a response went out since the request being received began.
    private var responding = false
    /// Knows whether a response is still owed (set by the observer when it is added).
    weak var observer: RequestEndObserver?

    init(timeout: TimeAmount, linger: TimeAmount = .seconds(2)) {
        self.timeout = timeout
        self.linger = linger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Past a 408 nothing more is a request: dropped, not decoded.
        guard !lingering else { return }
        startIfIdle(context)
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        responding = true
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    /// A request began (its first byte, or a head decoded from bytes already here).
    func startIfIdle(_ context: ChannelHandlerContext) {
        guard deadline == nil else { return }
        responding = false
        // Runs on the channel's event loop, where the handler and its context live.
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = bound.value
            handler.expire(context)
        }
    }

    /// The request being received is complete.
    func requestEnded() {
        deadline?.cancel()
        deadline = nil
    }

    private func expire(_ context: ChannelHandlerContext) {
        deadline = nil
        guard context.channel.isActive else { return }
        // While the server still owes a response to an earlier request (this one arrived
        // pipelined behind it), the client is not the one being slow: watch again rather
        // than cut into that response.
        if observer?.responseOwed == true {
            startIfIdle(context)
            return
        }
        if responding {
            context.close(promise: nil)
            return
        }
        let body = #"{"type":"about:blank","title":"Request Timeout","status":408,"detail":"The request was not received in time."}"#
        let response =
            "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/problem+json\r\nCache-Control: no-store\r\n"
            + "Connection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body
        let channel = context.channel
        lingering = true
        let linger = self.linger
        context.writeAndFlush(NIOAny(ByteBuffer(string: response))).whenComplete { _ in
            // Our side ends (the client reads the 408, then end of stream); theirs is read
            // and dropped until they close or the linger runs out.
            channel.close(mode: .output).whenComplete { result in
                if case .failure = result { channel.close(promise: nil) }
            }
            channel.eventLoop.scheduleTask(in: linger) { channel.close(promise: nil) }
        }
    }
}

/// After the HTTP decoder: tells `RequestReceiveDeadlineHandler` where a request ends, and
/// where one begins when its head came in the same read as the previous one's end; and
/// counts the responses still owed.
final class RequestEndObserver: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private var watch: RequestReceiveDeadlineHandler?
    private var watchContext: ChannelHandlerContext?
    /// Requests received whole, and responses ended. A response is owed while the first
    /// is ahead: the server is working on a request the client finished sending. (An early
    /// answer, such as a 401 before the body has arrived, ends a response before its
    /// request, which the counts keep level.)
    private var requestsEnded = 0
    private var responsesEnded = 0

    var responseOwed: Bool { requestsEnded > responsesEnded }

    func handlerAdded(context: ChannelHandlerContext) {
        watch = try? context.pipeline.syncOperations.handler(type: RequestReceiveDeadlineHandler.self)
        watchContext = try? context.pipeline.syncOperations.context(handlerType: RequestReceiveDeadlineHandler.self)
        watch?.observer = self
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { responsesEnded += 1 }
        context.write(data, promise: promise)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        watch = nil
        watchContext = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            if let watch, let watchContext { watch.startIfIdle(watchContext) }
        case .end:
            requestsEnded += 1
            watch?.requestEnded()
        case .body:
            break
        }
        context.fireChannelRead(data)
    }
}
