import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// The company's side of a webhook: `scripts/webhook_receiver.py`, a real local HTTP
/// server that verifies every delivery with `standardwebhooks` (the specification's
/// reference library, from PyPI) and answers as each endpoint is told to.
final class WebhookReceiver: @unchecked Sendable {
    // @unchecked: `Process` is not Sendable; it is only started here and terminated in
    // `stop()`, never touched from two tasks at once.
    let process: Process
    let port: Int
    let client: HTTPClient

    /// What one endpoint received.
    struct Delivery: Sendable {
        var receivedAt: Date
        var id: String
        var timestamp: String
        var signatures: Int
        /// For each configured secret, whether the reference library verified the delivery with it.
        var verified: [Bool]
        /// The JSON body, as text (re-serialised by the receiver).
        var body: [String: any Sendable]
        var bodyText: String
        var userAgent: String?

        var type: String? { body["type"] as? String }
        var data: [String: any Sendable] { body["data"] as? [String: any Sendable] ?? [:] }
        var request: [String: any Sendable] { data["request"] as? [String: any Sendable] ?? [:] }
    }

    static var python: String {
        ProcessInfo.processInfo.environment["WEBHOOK_RECEIVER_PYTHON"] ?? "/usr/bin/python3"
    }

    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/webhook_receiver.py").path

    static func start(client: HTTPClient) async throws -> WebhookReceiver {
        let portFile = FileManager.default.temporaryDirectory.appendingPathComponent("receiver-\(UUID().uuidString)").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script, "--port-file", portFile]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let port = Int(text) {
                try? FileManager.default.removeItem(atPath: portFile)
                return WebhookReceiver(process: process, port: port, client: client)
            }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        process.terminate()
        throw ReceiverDidNotStart(python: python)
    }

    struct ReceiverDidNotStart: Error, CustomStringConvertible {
        var python: String
        var description: String {
            "the webhook receiver did not start: \(python) needs the standardwebhooks package (scripts/test installs it in .venv and sets WEBHOOK_RECEIVER_PYTHON)"
        }
    }

    private init(process: Process, port: Int, client: HTTPClient) {
        self.process = process
        self.port = port
        self.client = client
    }

    func url(_ endpoint: String) -> String { "http://127.0.0.1:\(port)/\(endpoint)" }

    func configure(_ endpoint: String, secrets: [String]? = nil, behaviour: String? = nil, then: [String] = []) async throws {
        var config: [String: Any] = ["then": then]
        if let secrets { config["secrets"] = secrets }
        if let behaviour { config["behaviour"] = behaviour }
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/_configure/\(endpoint)")
        request.method = .POST
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: config)))
        _ = try await client.execute(request, timeout: .seconds(5)).body.collect(upTo: 1 << 20)
    }

    func log(_ endpoint: String) async throws -> [Delivery] {
        let response = try await client.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/_log/\(endpoint)"), timeout: .seconds(10))
        let data = Data(try await response.body.collect(upTo: 256 << 20).readableBytesView)
        let entries = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] ?? []
        return entries.map { entry in
            let body = entry["body"] as? [String: Any] ?? [:]
            let text = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) } ?? ""
            return Delivery(
                receivedAt: Date(timeIntervalSince1970: entry["receivedAt"] as? Double ?? 0), id: entry["id"] as? String ?? "",
                timestamp: entry["timestamp"] as? String ?? "", signatures: entry["signatures"] as? Int ?? 0,
                verified: entry["verified"] as? [Bool] ?? [], body: Self.sendable(body) as? [String: any Sendable] ?? [:],
                bodyText: text, userAgent: entry["userAgent"] as? String)
        }
    }

    /// Waits until `endpoint` has received at least `count` deliveries.
    @discardableResult
    func wait(for endpoint: String, count: Int, timeout: Duration = .seconds(20)) async throws -> [Delivery] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let log = try await log(endpoint)
            if log.count >= count || ContinuousClock.now >= deadline { return log }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    func stop() {
        // SIGKILL: nothing to flush, and a SIGTERM the test process ignores would be
        // ignored by its children too.
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    /// JSON's `null` in a delivery's body.
    struct JSONNull: Sendable {}

    /// JSON values from Foundation as Sendable ones.
    private static func sendable(_ value: Any) -> any Sendable {
        switch value {
        case let dictionary as [String: Any]: return dictionary.mapValues { sendable($0) } as [String: any Sendable]
        case let array as [Any]: return array.map { sendable($0) } as [any Sendable]
        case let string as String: return string
        case let number as NSNumber: return number.doubleValue
        default: return JSONNull()
        }
    }
}
