import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SMSGateway
import ServiceLifecycle
import Synchronization

/// A stand-in for Twilio's Messages API, served for real on a local port: it checks Basic
/// auth, records every message, and answers as told per destination (success, 429, 500,
/// 400 with a Twilio error code, or slowly).
final class FakeTwilio: Sendable {
    static let accountSID = "AC00000000000000000000000000000001"
    static let authToken = "fake-auth-token"

    enum Behaviour: Sendable {
        case accept
        case status(Int, code: Int?)
        /// Answers after a delay (longer than the client's timeout: an uncertain outcome).
        case delay(Duration)
    }

    struct Received: Sendable {
        var to: String
        var from: String
        var body: String
        var statusCallback: String?
        var sid: String?
    }

    /// Called with a message's id and destination after the gateway has taken it and before
    /// it answers the send: a status callback or a reply that overtakes the answer.
    typealias BeforeAnswer = @Sendable (_ sid: String, _ to: String) async -> Void

    private struct State {
        var beforeAnswer: BeforeAnswer?
        var received: [Received] = []
        var script: [String: [Behaviour]] = [:]
        var latency: Duration = .zero
    }
    private let state = Mutex(State())
    private let port = Mutex<Int?>(nil)
    private let task = Mutex<Task<Void, any Error>?>(nil)

    /// Starts serving on 127.0.0.1 and returns once the port is known.
    static func start() async throws -> FakeTwilio {
        let fake = FakeTwilio()
        try await fake.serve()
        return fake
    }

    private init() {}

    var baseURL: String { "http://127.0.0.1:\(port.withLock { $0 }!)" }

    /// The next answers for messages to `number`, in order; then `accept`.
    func script(_ number: String, _ behaviours: [Behaviour]) {
        state.withLock { $0.script[number, default: []] += behaviours }
    }

    func setBeforeAnswer(_ hook: BeforeAnswer?) { state.withLock { $0.beforeAnswer = hook } }

    /// A pause before every answer, like a real gateway's.
    func setLatency(_ latency: Duration) { state.withLock { $0.latency = latency } }

    var received: [Received] { state.withLock { $0.received } }
    var accepted: [Received] { received.filter { $0.sid != nil } }

    private func serve() async throws {
        let router = Router()
        router.post("2010-04-01/Accounts/:account/Messages.json") { request, context in
            try await self.handle(request, context: context)
        }
        let started = AsyncStream<Int>.makeStream()
        var logger = Logger(label: "fake-twilio")
        logger.logLevel = .critical
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in started.continuation.yield(channel.localAddress?.port ?? 0) }, logger: logger)
        let running = Task { try await app.runService(gracefulShutdownSignals: []) }
        task.withLock { $0 = running }
        for await port in started.stream {
            self.port.withLock { $0 = port }
            break
        }
    }

    func stop() {
        task.withLock { $0?.cancel() }
    }

    private func handle(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let expected = "Basic " + Data("\(Self.accountSID):\(Self.authToken)".utf8).base64EncodedString()
        guard request.headers[.authorization] == expected, context.parameters.get("account") == Self.accountSID else {
            return Self.json(401, #"{"code":20003,"message":"Authenticate","status":401}"#)
        }
        let body = try await request.body.collect(upTo: 1 << 20)
        let form = Dictionary(FormURLEncoding.decode(String(buffer: body)) ?? [], uniquingKeysWith: { a, _ in a })
        let to = form["To"] ?? ""
        let (behaviour, latency, beforeAnswer) = state.withLock { state -> (Behaviour, Duration, BeforeAnswer?) in
            var queue = state.script[to] ?? []
            let next = queue.isEmpty ? Behaviour.accept : queue.removeFirst()
            state.script[to] = queue
            return (next, state.latency, state.beforeAnswer)
        }
        if latency > .zero { try await Task.sleep(for: latency) }
        var received = Received(to: to, from: form["From"] ?? "", body: form["Body"] ?? "", statusCallback: form["StatusCallback"])
        switch behaviour {
        case .accept:
            let sid = Pipeline.messageSID()
            received.sid = sid
            state.withLock { $0.received.append(received) }
            await beforeAnswer?(sid, to)
            return Self.json(201, #"{"sid":"\#(sid)","status":"queued"}"#)
        case .status(let status, let code):
            state.withLock { $0.received.append(received) }
            var response = Self.json(status, #"{"code":\#(code ?? 0),"message":"scripted","status":\#(status)}"#)
            if status == 429 { response.headers[.retryAfter] = "0" }
            return response
        case .delay(let duration):
            // The message is taken, but the answer comes too late for the client.
            let sid = Pipeline.messageSID()
            received.sid = sid
            state.withLock { $0.received.append(received) }
            try await Task.sleep(for: duration)
            return Self.json(201, #"{"sid":"\#(sid)","status":"queued"}"#)
        }
    }

    private static func json(_ status: Int, _ body: String) -> Response {
        Response(
            status: .init(code: status), headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}
