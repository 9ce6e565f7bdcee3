import Crypto
import Foundation

/// The secret a dashboard session's cookie carries: 256 random bits, base64url. Only its
/// SHA-256 is stored, as for API tokens, so the table alone opens no session.
///
/// The session's CSRF token is derived from it (an HMAC of a fixed label keyed by the
/// secret): forms carry it, nothing stores it, and a page of one session is useless to
/// another, since only the browser holding the cookie knows the key.
public struct DashboardSessionSecret: Sendable, Equatable, CustomStringConvertible {
    /// A session unused for this long is over (and the janitor purges it a day later).
    public static let idleLimit: Duration = .seconds(12 * 3600)

    /// The cookie's value. Never logged: `description` redacts it.
    public let value: String

    private init(value: String) { self.value = value }

    /// A new secret from the system's cryptographically secure generator.
    public static func generate() -> DashboardSessionSecret {
        DashboardSessionSecret(value: randomBase64URL(bytes: 32))
    }

    /// A presented cookie value, if it has the shape of one of ours (43 base64url
    /// characters); anything else costs no lookup.
    public init?(cookie: some StringProtocol) {
        guard cookie.utf8.count == 43, cookie.utf8.allSatisfy(\.isBase64URL) else { return nil }
        self.value = String(cookie)
    }

    /// SHA-256 of the secret, what the database keeps.
    public var hash: Data { Data(SHA256.hash(data: Data(value.utf8))) }

    /// The token every form of this session carries.
    public var csrfToken: String {
        Data(HMAC<SHA256>.authenticationCode(for: Data(Self.csrfLabel.utf8), using: key)).base64URLEncoded()
    }

    /// Whether `presented` is this session's CSRF token, compared in constant time.
    public func isValidCSRFToken(_ presented: String) -> Bool {
        guard let code = Data(base64URLEncoded: presented) else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(code, authenticating: Data(Self.csrfLabel.utf8), using: key)
    }

    public var description: String { "dashboard session secret (redacted)" }

    private var key: SymmetricKey { SymmetricKey(data: Data(value.utf8)) }
    private static let csrfLabel = "surveyd dashboard csrf v1"
}

/// `bytes` random bytes from the system's secure generator, as base64url without padding.
public func randomBase64URL(bytes count: Int) -> String {
    var generator = SystemRandomNumberGenerator()
    return Data((0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }).base64URLEncoded()
}

extension UInt8 {
    var isBase64URL: Bool { isASCIIAlphanumeric || self == UInt8(ascii: "-") || self == UInt8(ascii: "_") }
}

extension Data {
    /// Decodes base64url with or without padding; `nil` if it is not.
    public init?(base64URLEncoded text: String) {
        guard text.utf8.allSatisfy(\.isBase64URL) else { return nil }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        self.init(base64Encoded: base64)
    }
}
