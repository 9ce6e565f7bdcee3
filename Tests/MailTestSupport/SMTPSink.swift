import Foundation
import MailTransport
import NIOSSL

/// A real SMTP server for the tests: `scripts/smtp_sink.py` (aiosmtpd from PyPI, in the
/// project's virtualenv), with STARTTLS on a self-signed certificate and AUTH. What it
/// accepted is read back from its directory.
public final class SMTPSink: @unchecked Sendable {
    // @unchecked: `Process` is not Sendable; it is only started here and terminated in
    // `stop()`, never touched from two tasks at once.
    let process: Process
    public let directory: URL
    public let port: Int
    public let certificate: String?

    public static let user = "mailer@example.com"
    public static let password = "s3cret:with@signs"

    public struct Message: Decodable, Sendable {
        public var from: String
        public var to: [String]
        public var data: String
        public var tls: Bool
        public var authenticated: Bool
        public var connection: Int
    }

    static var python: String {
        ProcessInfo.processInfo.environment["WEBHOOK_RECEIVER_PYTHON"] ?? "/usr/bin/python3"
    }

    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/smtp_sink.py").path

    public static func start(tls: Bool = true, authentication: Bool = true, pipelining: Bool = true) async throws -> SMTPSink {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("smtp-sink-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        var arguments = [script, "--dir", directory.path]
        if !tls { arguments.append("--no-tls") }
        if authentication { arguments += ["--user", user, "--password", password] }
        if pipelining { arguments.append("--pipelining") }
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        struct Ready: Decodable {
            var port: Int
            var certificate: String?
        }
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if let data = try? Data(contentsOf: directory.appendingPathComponent("ready.json")),
                let ready = try? JSONDecoder().decode(Ready.self, from: data)
            {
                return SMTPSink(process: process, directory: directory, port: ready.port, certificate: ready.certificate)
            }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        process.terminate()
        throw SinkDidNotStart(python: python)
    }

    struct SinkDidNotStart: Error, CustomStringConvertible {
        var python: String
        var description: String {
            "the SMTP sink did not start: \(python) needs the aiosmtpd package (scripts/test installs it in .venv and sets WEBHOOK_RECEIVER_PYTHON)"
        }
    }

    private init(process: Process, directory: URL, port: Int, certificate: String?) {
        self.process = process
        self.directory = directory
        self.port = port
        self.certificate = certificate
    }

    /// A configuration for this sink: STARTTLS with its certificate trusted, and its credentials.
    public func configuration(credentials: Bool = true, password: String = SMTPSink.password) -> SMTPConfiguration {
        var configuration = SMTPConfiguration(
            host: "127.0.0.1", port: port, security: .startTLS(required: credentials),
            credentials: credentials ? .init(user: Self.user, password: password) : nil, clientName: "tests.example")
        if let certificate { configuration.trustRoots = .file(certificate) }
        return configuration
    }

    public func messages() throws -> [Message] {
        let folder = directory.appendingPathComponent("messages")
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }.sorted()
        return try names.map { try JSONDecoder().decode(Message.self, from: Data(contentsOf: folder.appendingPathComponent($0))) }
    }

    public func stop() {
        // SIGKILL: nothing to flush, and a SIGTERM the test process ignores would be
        // ignored by its children too.
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: directory)
    }
}
