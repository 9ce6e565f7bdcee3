import Foundation
import NIOCore
import NIOSSL

/// Where and how to hand messages over: `SMTP_URL`, as relays document it.
///
/// - `smtp://user:password@host:587`: STARTTLS (RFC 3207), required when credentials are
///   given (they never cross the network in clear), used whenever offered otherwise;
/// - `smtps://user:password@host:465`: TLS from the first byte (RFC 8314);
/// - `smtp://localhost:1025`: a local catcher without TLS nor credentials (Mailpit).
///
/// The user and password are percent-decoded (an `@` in a user name is `%40`).
public struct SMTPConfiguration: Sendable {
    public enum Security: Sendable, Equatable {
        /// STARTTLS after the greeting; when not required, only if the server offers it.
        case startTLS(required: Bool)
        case implicitTLS
    }

    public struct Credentials: Sendable {
        public var user: String
        public var password: String
        public init(user: String, password: String) {
            self.user = user
            self.password = password
        }
    }

    public struct Timeouts: Sendable {
        public var connect: TimeAmount = .seconds(10)
        /// Each command's reply (RFC 5321 §4.5.3.2 allows minutes; relays answer in milliseconds).
        public var command: TimeAmount = .seconds(30)
        /// The reply to the data's final dot, when the server takes responsibility.
        public var dataEnd: TimeAmount = .seconds(60)
        public init() {}
    }

    public var host: String
    public var port: Int
    public var security: Security
    public var credentials: Credentials?
    /// The name this client gives in EHLO.
    public var clientName: String
    /// The certificates trusted for the server's: the system's, or a file (a private relay,
    /// the tests' self-signed server).
    public var trustRoots: NIOSSLTrustRoots = .default
    public var timeouts = Timeouts()
    /// Connections open at once; idle ones are reused and closed after `idleTimeout`.
    public var maximumConnections = 8
    public var idleTimeout: TimeAmount = .seconds(30)
    /// Messages per connection before it is closed and another opened (relays often limit it).
    public var messagesPerConnection = 100

    public init(host: String, port: Int, security: Security, credentials: Credentials? = nil, clientName: String = "localhost") {
        self.host = host
        self.port = port
        self.security = security
        self.credentials = credentials
        self.clientName = clientName
    }

    public init(url text: String, clientName: String = "localhost") throws {
        guard let url = URLComponents(string: text), let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty else {
            throw MailError(.badConfiguration, "SMTP_URL must look like smtp://user:password@host:587 or smtps://…")
        }
        let security: Security
        let defaultPort: Int
        switch scheme {
        case "smtp": (security, defaultPort) = (.startTLS(required: url.user != nil), 587)
        case "smtps": (security, defaultPort) = (.implicitTLS, 465)
        default: throw MailError(.badConfiguration, "SMTP_URL's scheme must be smtp or smtps, not \(scheme)")
        }
        guard (url.path.isEmpty || url.path == "/"), url.query == nil, url.fragment == nil else {
            throw MailError(.badConfiguration, "SMTP_URL takes no path, query or fragment")
        }
        var credentials: Credentials?
        if let user = url.user {
            guard let password = url.password else { throw MailError(.badConfiguration, "SMTP_URL names a user without a password") }
            credentials = Credentials(user: user, password: password)
        }
        let port = url.port ?? defaultPort
        guard (1...65535).contains(port) else { throw MailError(.badConfiguration, "SMTP_URL's port is out of range") }
        self.init(host: host, port: port, security: security, credentials: credentials, clientName: clientName)
    }
}
