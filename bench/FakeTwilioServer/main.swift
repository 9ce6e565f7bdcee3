import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import SMSGateway
import Synchronization

/// A Twilio-compatible gateway for benchmarks: accepts every message at once and remembers
/// when each destination arrived, so a benchmark can measure enqueue-to-gateway latency.
/// With an auth token it also takes calls, and plays each one against the URLs it was given
/// as Twilio would: our TwiML fetched (signed), the `<Gather>` answered with `9`, then the
/// status callback; each step's time is kept.
///
///     fake-twilio PORT [AUTH_TOKEN ACCOUNT_SID [RING_MS]]
///     POST /2010-04-01/Accounts/{sid}/Messages.json   → 201 {"sid", "status"}
///     POST /2010-04-01/Accounts/{sid}/Calls.json      → 201 {"sid", "status"}, then the call is played
///     GET  /received                                  → {"count": n, "arrivals": {"+32...": epochSeconds}}
///     GET  /calls                                     → {"+32...": {"placed", "answering", "asked", "keyed", "scored", "ended"}}
///                                                       (epoch seconds: the call taken, our TwiML requested after
///                                                       RING_MS of ringing (default 0) and answered, the digits
///                                                       posted and answered, the status callback answered)
///     DELETE /received                                → forget everything
let arguments = CommandLine.arguments
let port = arguments.count > 1 ? Int(arguments[1]) ?? 9099 : 9099
let authToken = arguments.count > 2 ? arguments[2] : nil
let accountSID = arguments.count > 3 ? arguments[3] : "AC" + String(repeating: "0", count: 32)
let ring = Duration.milliseconds(arguments.count > 4 ? Int(arguments[4]) ?? 0 : 0)

final class Arrivals: Sendable {
    private let state = Mutex<(count: Int, at: [String: Double], calls: [String: [String: Double]])>((0, [:], [:]))
    func record(_ to: String) -> Int {
        let now = Date().timeIntervalSince1970
        return state.withLock {
            $0.count += 1
            $0.at[to] = now
            return $0.count
        }
    }
    func call(_ to: String, _ step: String) {
        let now = Date().timeIntervalSince1970
        state.withLock { $0.calls[to, default: [:]][step] = now }
    }
    func snapshot() -> (Int, [String: Double]) { state.withLock { ($0.count, $0.at) } }
    var calls: [String: [String: Double]] { state.withLock { $0.calls } }
    func reset() { state.withLock { $0 = (0, [:], [:]) } }
}

let arrivals = Arrivals()

func form(_ body: ByteBuffer) -> [String: String] {
    Dictionary(FormURLEncoding.decode(String(buffer: body)) ?? [], uniquingKeysWith: { first, _ in first })
}

/// Posts a signed form as Twilio would; the answer's text.
func post(_ url: String, _ parameters: [(String, String)]) async -> String? {
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
    request.headers.add(name: "X-Twilio-Signature", value: TwilioSignature.sign(url: url, parameters: parameters, authToken: authToken ?? ""))
    request.body = .bytes(ByteBuffer(string: FormURLEncoding.encode(parameters)))
    guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(10)),
        let body = try? await response.body.collect(upTo: 1 << 20), response.status == .ok || response.status == .noContent
    else { return nil }
    return String(buffer: body)
}

/// `action="…"` of the document's `<Gather>`.
func gatherAction(_ document: String) -> String? {
    guard let gather = document.range(of: "<Gather "), let action = document[gather.upperBound...].range(of: #"action=""#),
        let end = document[action.upperBound...].firstIndex(of: "\"")
    else { return nil }
    return String(document[action.upperBound..<end]).replacingOccurrences(of: "&amp;", with: "&")
}

func play(sid: String, to: String, url: String, callback: String) async {
    let common = [("CallSid", sid), ("AccountSid", accountSID), ("To", to), ("ApiVersion", "2010-04-01"), ("Direction", "outbound-api")]
    try? await Task.sleep(for: ring)
    arrivals.call(to, "answering")
    var document = await post(url, common + [("CallStatus", "in-progress"), ("AnsweredBy", "human")])
    // The call may be answered before the worker has written it down: follow the Redirect.
    for _ in 0..<5 where document.map({ gatherAction($0) == nil && $0.contains("<Redirect") }) == true {
        try? await Task.sleep(for: .milliseconds(100))
        document = await post(url, common + [("CallStatus", "in-progress"), ("AnsweredBy", "human")])
    }
    arrivals.call(to, "asked")
    if let document, let action = gatherAction(document) {
        arrivals.call(to, "keyed")
        if await post(action, common + [("CallStatus", "in-progress"), ("Digits", "9"), ("FinishedOnKey", "#")]) != nil {
            arrivals.call(to, "scored")
        }
    }
    _ = await post(callback, common + [("CallStatus", "completed"), ("CallDuration", "20")])
    arrivals.call(to, "ended")
}

let router = Router()
router.post("2010-04-01/Accounts/:account/Messages.json") { request, context -> Response in
    let body = try await request.body.collect(upTo: 1 << 16)
    let number = arrivals.record(form(body)["To"] ?? "")
    return Response(
        status: .created, headers: [.contentType: "application/json"],
        body: .init(byteBuffer: ByteBuffer(string: #"{"sid":"SMbench\#(number)","status":"queued"}"#)))
}
router.post("2010-04-01/Accounts/:account/Calls.json") { request, context -> Response in
    let fields = form(try await request.body.collect(upTo: 1 << 16))
    let to = fields["To"] ?? ""
    arrivals.call(to, "placed")
    let sid = "CA" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    if authToken != nil, let url = fields["Url"], let callback = fields["StatusCallback"] {
        Task { await play(sid: sid, to: to, url: url, callback: callback) }
    }
    return Response(
        status: .created, headers: [.contentType: "application/json"],
        body: .init(byteBuffer: ByteBuffer(string: #"{"sid":"\#(sid)","status":"queued"}"#)))
}
router.get("received") { _, _ -> Response in
    let (count, at) = arrivals.snapshot()
    let data = try JSONSerialization.data(withJSONObject: ["count": count, "arrivals": at])
    return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}
router.get("calls") { _, _ -> Response in
    let data = try JSONSerialization.data(withJSONObject: arrivals.calls)
    return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}
router.delete("received") { _, _ -> HTTPResponse.Status in
    arrivals.reset()
    return .noContent
}
var logger = Logger(label: "fake-twilio")
logger.logLevel = .warning
let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: logger)
try await app.runService()
