import NIOCore
import Synchronization

/// How many connections `serve` keeps open, in all and per client address. Past either
/// limit a new connection is answered `503` with `Retry-After` and closed at once, before
/// anything of it is read: a client holding thousands of connections cannot take the file
/// descriptors every other client needs.
///
/// The address is the connection's peer: behind a load balancer that is the balancer, so
/// there the per-address limit must be above what the balancer opens (or the balancer
/// enforces its own).
final class ConnectionAdmission: Sendable {
    let maximum: Int
    let maximumPerAddress: Int
    private let open = Mutex<(total: Int, byAddress: [String: Int])>((0, [:]))

    init(maximum: Int, maximumPerAddress: Int) {
        self.maximum = maximum
        self.maximumPerAddress = maximumPerAddress
    }

    enum Refusal: Equatable {
        case full, addressFull
    }

    /// Counts a new connection in, or says why not.
    func admit(_ address: String) -> Refusal? {
        open.withLock { open in
            if open.total >= maximum { return .full }
            if open.byAddress[address, default: 0] >= maximumPerAddress { return .addressFull }
            open.total += 1
            open.byAddress[address, default: 0] += 1
            return nil
        }
    }

    func release(_ address: String) {
        open.withLock { open in
            open.total -= 1
            let left = open.byAddress[address, default: 1] - 1
            open.byAddress[address] = left > 0 ? left : nil
        }
    }

    var openConnections: Int { open.withLock { $0.total } }
}

/// The first handler of every connection: admits it or refuses it (a raw `503` written
/// straight to the socket, before any HTTP handler exists to answer), and counts it out
/// when it closes.
final class ConnectionAdmissionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let admission: ConnectionAdmission
    private var address: String?

    init(admission: ConnectionAdmission) {
        self.admission = admission
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let address = context.channel.remoteAddress?.ipAddress ?? "unknown"
        if let refusal = admission.admit(address) {
            Self.refuse(context, because: refusal)
        } else {
            self.address = address
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        releaseCount()
        context.fireChannelInactive()
    }

    /// Also here: a connection torn down before it was ever active (its setup failed)
    /// never sees `channelInactive`, and must not stay counted.
    func handlerRemoved(context: ChannelHandlerContext) {
        releaseCount()
    }

    private func releaseCount() {
        if let address {
            admission.release(address)
            self.address = nil
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // A refused connection's bytes go nowhere; an admitted one's go on.
        guard address != nil else { return }
        context.fireChannelRead(data)
    }

    static func refuse(_ context: ChannelHandlerContext, because refusal: ConnectionAdmission.Refusal) {
        let detail =
            switch refusal {
            case .full: "The server has as many connections open as it serves; retry in a moment."
            case .addressFull: "Too many connections are open from this address; close some, or retry in a moment."
            }
        let body = #"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"\#(detail)"}"#
        let response =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\nRetry-After: 1\r\n"
            + "Cache-Control: no-store\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body
        let channel = context.channel
        context.writeAndFlush(NIOAny(ByteBuffer(string: response))).whenComplete { _ in channel.close(promise: nil) }
    }
}
