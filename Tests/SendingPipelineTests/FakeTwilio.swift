import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import NIOHTTP1
import Logging
import NIOCore
import SMSGateway
import ServiceLifecycle
import Synchronization

/// A stand-in for Twilio's Messages and Calls APIs, served for real on a local port: it
/// checks Basic auth, records every message, and answers as told per destination (success,
/// 429, 500, 400 with a Twilio error code, or slowly). A call it takes is played out over
/// HTTP against the API under test, as Twilio would: our TwiML fetched (signed), its
/// `<Gather>` followed with the digits scripted for that number (or none), then the
/// status callback.
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

    /// How a call to a number goes: who answers, what they key at each `<Gather>` (`nil`:
    /// nothing), and the call's final status (`busy` and `no-answer` end it unanswered).
    struct CallScript: Sendable {
        var answeredBy = "human"
        var keys: [String?] = ["9"]
        var end = "completed"
        var seconds = 42
    }

    /// A call as the gateway played it: every TwiML document our API answered, in order.
    struct Call: Sendable {
        var sid: String
        var to: String
        var twiml: [String] = []
        var finished = false

        /// The documents after any "wait a second" ones (the call answered before the worker
        /// had written it down, which on a fast local gateway happens).
        var conversation: [String] { twiml.filter { !$0.contains("<Pause") } }
    }

    private struct State {
        var beforeAnswer: BeforeAnswer?
        var received: [Received] = []
        var script: [String: [Behaviour]] = [:]
        var latency: Duration = .zero
        var callScripts: [String: [CallScript]] = [:]
        var calls: [Call] = []
        /// Where `Pipeline.publicBaseURL` really is (the live API's port).
        var apiPort: Int?
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
    var calls: [Call] { state.withLock { $0.calls } }

    /// The next calls to `number` go so, in order; then a person answering and keying 9.
    func scriptCalls(_ number: String, _ scripts: [CallScript]) {
        state.withLock { $0.callScripts[number, default: []] += scripts }
    }

    /// Calls are played against the API served on this port.
    func setAPIPort(_ port: Int) { state.withLock { $0.apiPort = port } }
    var accepted: [Received] { received.filter { $0.sid != nil } }

    private func serve() async throws {
        let router = Router()
        router.post("2010-04-01/Accounts/:account/Messages.json") { request, context in
            try await self.handle(request, context: context)
        }
        router.post("2010-04-01/Accounts/:account/Calls.json") { request, context in
            try await self.handleCall(request, context: context)
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
        guard Self.isAuthorized(request, context) else {
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

    private func handleCall(_ request: Request, context: BasicRequestContext) async throws -> Response {
        guard Self.isAuthorized(request, context) else {
            return Self.json(401, #"{"code":20003,"message":"Authenticate","status":401}"#)
        }
        let body = try await request.body.collect(upTo: 1 << 20)
        let form = Dictionary(FormURLEncoding.decode(String(buffer: body)) ?? [], uniquingKeysWith: { a, _ in a })
        let to = form["To"] ?? ""
        guard let url = form["Url"], let callback = form["StatusCallback"], form["MachineDetection"] == "Enable" else {
            return Self.json(400, #"{"code":21205,"message":"Url, StatusCallback and MachineDetection expected","status":400}"#)
        }
        let sid = "CA" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let script = state.withLock { state -> CallScript in
            state.calls.append(Call(sid: sid, to: to))
            var queue = state.callScripts[to] ?? []
            let next = queue.isEmpty ? CallScript() : queue.removeFirst()
            state.callScripts[to] = queue
            return next
        }
        Task { await self.play(sid: sid, to: to, from: form["From"] ?? "", url: url, callback: callback, script: script) }
        return Self.json(201, #"{"sid":"\#(sid)","status":"queued"}"#)
    }

    /// The call, played out: ringing a moment, then our TwiML and its `<Gather>`s, then the end.
    private func play(sid: String, to: String, from: String, url: String, callback: String, script: CallScript) async {
        let common = [("CallSid", sid), ("AccountSid", Self.accountSID), ("From", from), ("To", to), ("ApiVersion", "2010-04-01"),
                      ("Direction", "outbound-api")]
        try? await Task.sleep(for: .milliseconds(20))
        if script.end == "completed" {
            var next = await post(url, common + [("CallStatus", "in-progress"), ("AnsweredBy", script.answeredBy)], call: sid)
            var keys = script.keys[...]
            for _ in 0..<8 {
                guard let document = next else { break }
                if let action = Self.attribute("action", in: document, of: "Gather") {
                    let key = keys.popFirst() ?? nil
                    var parameters = common + [("CallStatus", "in-progress")]
                    if let key { parameters += [("Digits", key), ("FinishedOnKey", key.count == 2 ? "" : "#")] }
                    // No key at all: Twilio goes on to the verb after the Gather (our Redirect).
                    next = await post(key == nil ? (Self.redirect(in: document) ?? action) : action, parameters, call: sid)
                } else if let redirect = Self.redirect(in: document) {
                    // `<Pause length="1"/>` first, as Twilio would.
                    if document.contains("<Pause") { try? await Task.sleep(for: .seconds(1)) }
                    next = await post(redirect, common + [("CallStatus", "in-progress")], call: sid)
                } else {
                    break
                }
            }
        }
        _ = await post(callback, common + [("CallStatus", script.end), ("CallDuration", script.end == "completed" ? "\(script.seconds)" : "0")], call: nil)
        state.withLock { state in
            if let index = state.calls.firstIndex(where: { $0.sid == sid }) { state.calls[index].finished = true }
        }
    }

    /// Posts a signed form to one of our URLs (as the public URL names it), on the live API.
    private func post(_ publicURL: String, _ parameters: [(String, String)], call sid: String?) async -> String? {
        guard let port = state.withLock({ $0.apiPort }) else { return nil }
        let local = publicURL.replacingOccurrences(of: Pipeline.publicBaseURL, with: "http://127.0.0.1:\(port)")
        var request = HTTPClientRequest(url: local)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(
            name: "X-Twilio-Signature", value: TwilioSignature.sign(url: publicURL, parameters: parameters, authToken: Self.authToken))
        request.body = .bytes(ByteBuffer(string: FormURLEncoding.encode(parameters)))
        guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(10)),
            let body = try? await response.body.collect(upTo: 1 << 20)
        else { return nil }
        let text = String(buffer: body)
        if let sid, response.status == .ok {
            state.withLock { state in
                if let index = state.calls.firstIndex(where: { $0.sid == sid }) { state.calls[index].twiml.append(text) }
            }
        }
        return response.status == .ok ? text : nil
    }

    /// `name="…"` of the first `<element …>` in a TwiML document, unescaped.
    static func attribute(_ name: String, in document: String, of element: String) -> String? {
        guard let start = document.range(of: "<\(element) "), let end = document[start.upperBound...].range(of: ">") else { return nil }
        let tag = document[start.upperBound..<end.lowerBound]
        guard let attribute = tag.range(of: "\(name)=\""), let close = tag[attribute.upperBound...].firstIndex(of: "\"") else { return nil }
        return String(tag[attribute.upperBound..<close]).replacingOccurrences(of: "&amp;", with: "&")
    }

    /// The URL of the document's `<Redirect>`, if it has one.
    static func redirect(in document: String) -> String? {
        guard let start = document.range(of: "<Redirect"), let open = document[start.upperBound...].range(of: ">"),
            let close = document[open.upperBound...].range(of: "</Redirect>")
        else { return nil }
        return String(document[open.upperBound..<close.lowerBound]).replacingOccurrences(of: "&amp;", with: "&")
    }

    /// Basic auth with our account, for our account's resources.
    private static func isAuthorized(_ request: Request, _ context: BasicRequestContext) -> Bool {
        let expected = "Basic " + Data("\(accountSID):\(authToken)".utf8).base64EncodedString()
        return request.headers[.authorization] == expected && context.parameters.get("account") == accountSID
    }

    private static func json(_ status: Int, _ body: String) -> Response {
        Response(
            status: .init(code: status), headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}
