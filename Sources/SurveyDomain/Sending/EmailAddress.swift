import Foundation

/// An e-mail address the service can send to (RFC 5321 §4.1.2 and §4.5.3.1): a dot-atom
/// local part of at most 64 octets, `@`, a domain name of at most 255 octets whose labels
/// may be internationalised (kept as their ASCII `xn--` form, RFC 5890), at most 254
/// octets in all. Refused rather than guessed: quoted local parts, comments, address
/// literals (`[192.0.2.1]`), and non-ASCII local parts (SMTPUTF8 is not required of relays).
public struct EmailAddress: Hashable, Sendable, CustomStringConvertible {
    /// The local part as written, `@`, the domain in lower case and ASCII: what goes in the
    /// SMTP envelope and the `To:` header.
    public let address: String

    public enum Problem: Error, Equatable, Sendable, CustomStringConvertible {
        case shape, localPart, domain, length

        public var description: String {
            switch self {
            case .shape: "must be an e-mail address: local-part@domain, e.g. jane@example.com"
            case .localPart:
                "has a local part (before @) this service cannot send to: letters, digits and !#$%&'*+-/=?^_`{|}~ separated by single dots, at most 64 characters"
            case .domain: "has a domain that is not a host name: labels of letters, digits and hyphens (or an internationalised name), separated by dots"
            case .length: "is longer than 254 characters"
            }
        }
    }

    public init(parsing text: String) throws(Problem) {
        guard let at = text.lastIndex(of: "@"), at != text.startIndex else { throw .shape }
        let local = String(text[..<at])
        let domain = String(text[text.index(after: at)...])
        guard !domain.isEmpty, !local.contains("@") else { throw .shape }
        guard local.utf8.count <= 64, Self.isDotAtom(local) else { throw .localPart }
        guard let ascii = Self.asciiDomain(domain) else { throw .domain }
        let address = local + "@" + ascii
        guard address.utf8.count <= 254 else { throw .length }
        self.address = address
    }

    /// What the hash of the destination is made from: the whole address in lower case, so that
    /// `Jane@Example.com` and `jane@example.com` are one person for opt-outs and the one
    /// open survey per destination (mail providers treat local parts without case).
    public var canonical: String { address.lowercased() }

    /// Never the address itself: descriptions end up in logs.
    public var description: String { "EmailAddress(redacted)" }

    private static let atext = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~".utf8)

    static func isDotAtom(_ text: String) -> Bool {
        let atoms = text.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        return atoms.allSatisfy { !$0.isEmpty && $0.allSatisfy(atext.contains) }
    }

    /// The domain as DNS carries it: NFC, lower case, each label either LDH or turned into
    /// its `xn--` form; at least two labels; a top-level label that is not all digits.
    static func asciiDomain(_ text: String) -> String? {
        let trimmed = text.hasSuffix(".") ? String(text.dropLast()) : text
        let labels = trimmed.precomposedStringWithCanonicalMapping.lowercased()
            .split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard labels.count >= 2 else { return nil }
        var ascii: [String] = []
        for label in labels {
            guard !label.isEmpty else { return nil }
            let encoded: String
            if label.unicodeScalars.allSatisfy(\.isASCII) {
                encoded = label
            } else {
                guard label.unicodeScalars.allSatisfy({ !$0.properties.isWhitespace && $0.properties.generalCategory != .control }),
                    let punycode = Punycode.encode(label)
                else { return nil }
                encoded = "xn--" + punycode
            }
            guard (1...63).contains(encoded.utf8.count), isLDH(encoded) else { return nil }
            ascii.append(encoded)
        }
        guard !ascii.last!.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else { return nil }
        let domain = ascii.joined(separator: ".")
        return domain.utf8.count <= 253 ? domain : nil
    }

    private static func isLDH(_ label: String) -> Bool {
        let bytes = Array(label.utf8)
        return bytes.first != UInt8(ascii: "-") && bytes.last != UInt8(ascii: "-")
            && bytes.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == UInt8(ascii: "-") }
    }
}
