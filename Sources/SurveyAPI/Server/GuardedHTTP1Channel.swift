import HummingbirdCore
import Logging
import NIOCore

/// Hummingbird's HTTP/1.1 child channel with two guards in front of it: connection
/// admission (`ConnectionAdmission`) and the request receive deadline
/// (`RequestReceiveDeadlineHandler`). They need the raw bytes, before the HTTP decoder, which
/// `HTTP1Channel`'s own extra handlers (placed after it) cannot see.
struct GuardedHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value

    let responder: HTTPChannelHandler.Responder
    let idleTimeout: TimeAmount
    let receiveTimeout: TimeAmount
    let admission: ConnectionAdmission

    private var base: HTTP1Channel {
        HTTP1Channel(
            responder: responder,
            configuration: .init(additionalChannelHandlers: [RequestEndObserver()], idleTimeout: idleTimeout))
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ConnectionAdmissionHandler(admission: admission))
            try channel.pipeline.syncOperations.addHandler(RequestReceiveDeadlineHandler(timeout: receiveTimeout))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 behind `GuardedHTTP1Channel`'s guards.
    static func guardedHTTP1(
        idleTimeout: TimeAmount, receiveTimeout: TimeAmount, admission: ConnectionAdmission
    ) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            GuardedHTTP1Channel(
                responder: responder, idleTimeout: idleTimeout, receiveTimeout: receiveTimeout, admission: admission)
        }
    }
}
