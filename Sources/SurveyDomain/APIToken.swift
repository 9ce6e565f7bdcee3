import Crypto
import Foundation

/// A company's API token: `nps_live_` followed by 43 base64url characters (256 random
/// bits). Shown once at creation; only its SHA-256 is stored, and presented tokens are
/// looked up by that hash, so no comparison ever runs over the secret itself.
public struct APIToken: Sendable, Equatable, CustomStringConvertible {
    public static let prefix = "nps_live_"
    /// What an operator sees in listings: the prefix and a few characters, never enough to use.
    public static let hintLength = prefix.count + 6

    /// The whole secret. Never logged: `description` redacts it.
    public let secret: String

    public init(secret: String) { self.secret = secret }

    /// A new token from the system's cryptographically secure generator.
    public static func generate() -> APIToken {
        APIToken(secret: prefix + randomBase64URL(bytes: 32))
    }

    /// SHA-256 of the token, what the database keeps.
    public var hash: Data { Data(SHA256.hash(data: Data(secret.utf8))) }

    public var hint: String { String(secret.prefix(Self.hintLength)) }

    /// Whether a presented string could be one of our tokens at all; a cheap filter before
    /// the database lookup.
    public var isWellFormed: Bool {
        secret.hasPrefix(Self.prefix) && secret.utf8.count == Self.prefix.utf8.count + 43
            && secret.utf8.dropFirst(Self.prefix.utf8.count).allSatisfy(\.isBase64URL)
    }

    public var description: String { hint + "…" }
}

/// What a token may do, each scope including the ones before it. `read` tokens list and
/// report; `write` tokens also create, delete and send, so a dashboard's token leaking
/// cannot send a single SMS; `admin` tokens also manage the company's own tokens and
/// settings (the company's administrator; the operator issues the first one).
public enum TokenScope: String, Sendable, CaseIterable, Comparable {
    case read
    case write
    case admin

    public static func < (lhs: TokenScope, rhs: TokenScope) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

extension Data {
    /// Base64url without padding (RFC 4648 §5).
    public func base64URLEncoded() -> String {
        base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

/// Constant-time equality of two secrets (e.g. the operator's admin token).
public func constantTimeEquals(_ lhs: String, _ rhs: String) -> Bool {
    // Compare digests: equal length inputs, and the time does not depend on where they differ.
    let left = SHA256.hash(data: Data(lhs.utf8))
    let right = SHA256.hash(data: Data(rhs.utf8))
    var difference: UInt8 = 0
    for (a, b) in zip(left, right) { difference |= a ^ b }
    return difference == 0
}
