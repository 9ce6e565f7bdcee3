import Crypto
import Foundation

/// A webhook endpoint's signing secret, as the Standard Webhooks specification writes it:
/// `whsec_` and the base64 of the key (here 32 random bytes; the specification asks for
/// 24 to 64). Shown once when made; `description` never shows it.
public struct WebhookSecret: Sendable, Equatable, CustomStringConvertible {
    public static let prefix = "whsec_"

    /// The HMAC key.
    public let key: Data

    public init?(_ text: String) {
        guard text.hasPrefix(Self.prefix), let key = Data(base64Encoded: String(text.dropFirst(Self.prefix.count))),
            (24...64).contains(key.count)
        else { return nil }
        self.key = key
    }

    public init(key: Data) {
        self.key = key
    }

    /// A new secret from the system's cryptographically secure generator.
    public static func generate() -> WebhookSecret {
        var generator = SystemRandomNumberGenerator()
        return WebhookSecret(key: Data((0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }))
    }

    /// `whsec_…`: the form the receiver configures.
    public var text: String { Self.prefix + key.base64EncodedString() }

    public var description: String { Self.prefix + "…" }
}

/// Standard Webhooks signatures: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`
/// under each secret, separated by spaces (two while a rotated secret is still honoured).
public enum WebhookSignature {
    public static func header(id: String, timestamp: Int64, body: [UInt8], secrets: [WebhookSecret]) -> String {
        var message = Data("\(id).\(timestamp).".utf8)
        message.append(contentsOf: body)
        return secrets.map { secret in
            let mac = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: secret.key))
            return "v1," + Data(mac).base64EncodedString()
        }.joined(separator: " ")
    }
}
