/// Why a message could not be handed over. `description` names the kind only (it may reach
/// a request's failure reason or a log line); `debugDescription` adds the server's words.
public struct MailError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        /// The server could not be reached, or the connection ended before the message was handed over.
        public static let connectionFailed = Code(name: "connectionFailed")
        /// A step took longer than its limit.
        public static let timedOut = Code(name: "timedOut")
        /// The server said something that is not SMTP, or not what the step expects.
        public static let protocolViolation = Code(name: "protocolViolation")
        /// The server refused a command with a reply (4xx or 5xx: see `reply`).
        public static let refused = Code(name: "refused")
        /// TLS was required and the server does not offer it, or it failed.
        public static let tlsUnavailable = Code(name: "tlsUnavailable")
        /// The server wants credentials it does not accept, or offers no method we speak.
        public static let authenticationFailed = Code(name: "authenticationFailed")
        /// The configuration cannot work (a malformed SMTP_URL, …).
        public static let badConfiguration = Code(name: "badConfiguration")
        public var description: String { name }
    }

    public var code: Code
    public var detail: String
    /// The server's reply, when it refused.
    public var reply: SMTPReply?

    public init(_ code: Code, _ detail: String, reply: SMTPReply? = nil) {
        self.code = code
        self.detail = detail
        self.reply = reply
    }

    public var description: String { "MailError(\(code))" }
    public var debugDescription: String { "MailError(\(code): \(detail)\(reply.map { ", reply \($0)" } ?? ""))" }
}
