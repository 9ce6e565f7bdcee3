import Crypto
import Foundation

/// Turns a phone number into what the database keeps instead: `HMAC-SHA256(key, E.164)`.
/// The key comes from `DESTINATION_HASH_KEY` and never reaches the database, so the
/// stored hashes cannot be reversed by trying every phone number.
public struct DestinationHasher: Sendable {
    private let key: SymmetricKey

    public enum KeyError: Error, CustomStringConvertible, Equatable {
        case missing, malformed
        public var description: String {
            switch self {
            case .missing: "DESTINATION_HASH_KEY is not set: 32 random bytes, hex-encoded (e.g. openssl rand -hex 32)"
            case .malformed: "DESTINATION_HASH_KEY must be 64 hexadecimal characters (32 bytes)"
            }
        }
    }

    /// The key as 64 hexadecimal characters.
    public init(hexKey: String?) throws(KeyError) {
        guard let hexKey, !hexKey.isEmpty else { throw .missing }
        let characters = Array(hexKey.utf8)
        guard characters.count == 64 else { throw .malformed }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        for index in stride(from: 0, to: 64, by: 2) {
            guard let high = Self.nibble(characters[index]), let low = Self.nibble(characters[index + 1]) else {
                throw .malformed
            }
            bytes.append(high << 4 | low)
        }
        key = SymmetricKey(data: bytes)
    }

    public func hash(_ number: PhoneNumber) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: Data(number.e164.utf8), using: key))
    }

    /// An address's hash, of its canonical (lower-case) form. No separation from phone
    /// numbers is needed: an E.164 number never contains `@`.
    public func hash(_ address: EmailAddress) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: Data(address.canonical.utf8), using: key))
    }

    public func hash(_ destination: Destination) -> Data {
        switch destination {
        case .phone(let number): hash(number)
        case .email(let address): hash(address)
        }
    }

    /// A keyed fingerprint of anything that may contain phone numbers (a request body kept
    /// for idempotency): a plain hash of a one-number body could be reversed by trying
    /// every number. Domain-separated from `hash(_:)`.
    public func fingerprint(_ data: Data) -> Data {
        var mac = HMAC<SHA256>(key: key)
        mac.update(data: Data("fingerprint\u{0}".utf8))
        mac.update(data: data)
        return Data(mac.finalize())
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
