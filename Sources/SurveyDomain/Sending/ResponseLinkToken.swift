import Crypto
import Foundation

/// What an e-mailed survey's score links carry (`/r/{token}/{score}`): 128 random bits as 22
/// base64url characters, saying nothing about the request, the company or the address. Only
/// its SHA-256 is stored, next to the request, and it answers only within the request's
/// response window.
public struct ResponseLinkToken: Sendable, Equatable, CustomStringConvertible {
    /// The link's token. Never logged: `description` redacts it.
    public let value: String

    private init(value: String) { self.value = value }

    public static func generate() -> ResponseLinkToken {
        ResponseLinkToken(value: randomBase64URL(bytes: 16))
    }

    /// A presented token, if it has the shape of one of ours; anything else costs no lookup.
    public init?(presented: some StringProtocol) {
        guard presented.utf8.count == 22, presented.utf8.allSatisfy(\.isBase64URL) else { return nil }
        self.value = String(presented)
    }

    /// What the database keeps.
    public var hash: Data { Data(SHA256.hash(data: Data(value.utf8))) }

    public var description: String { "response link token (redacted)" }
}
