import Foundation

/// A company's webhook URL, checked before anything is stored: `https` only, a host, no
/// user name or password, no fragment, at most 2048 characters. A host written as an
/// address must be public (`WebhookDestinationPolicy`); a name is resolved, and each of its
/// addresses checked, at registration and again before each delivery (elsewhere: this
/// type does no I/O). `allowPrivate` (the operator's `WEBHOOK_ALLOW_PRIVATE_URLS`, for
/// local development and the tests) also allows `http` and any address.
public struct WebhookURL: Sendable, Equatable {
    public enum Host: Sendable, Equatable {
        case name(String)
        /// 4 or 16 bytes, network order.
        case address([UInt8])
    }

    /// The canonical form (see `parse`), which is what is stored and requested.
    public var text: String
    public var isHTTPS: Bool
    public var host: Host
    public var port: Int

    public static let maximumLength = 2048

    /// The URL, or why it may not be used.
    public static func parse(_ text: String, allowPrivate: Bool) -> Result<WebhookURL, WebhookURLError> {
        guard text.utf8.count <= maximumLength else { return .failure(.tooLong) }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            return .failure(.malformed)
        }
        guard scheme == "https" || (allowPrivate && scheme == "http") else { return .failure(.notHTTPS) }
        guard components.user == nil, components.password == nil else { return .failure(.credentials) }
        guard components.fragment == nil else { return .failure(.fragment) }
        // A host is written as itself: a percent-encoded one would be decoded differently by
        // the HTTP client than by this check.
        guard let rawHost = components.host, !rawHost.isEmpty, !(components.percentEncodedHost ?? "").contains("%") else {
            return .failure(.malformed)
        }
        let port = components.port ?? (scheme == "https" ? 443 : 80)
        guard (1...65_535).contains(port) else { return .failure(.malformed) }

        let host: Host
        if let address = Self.address(rawHost) {
            guard allowPrivate || WebhookDestinationPolicy.isPublic(address) else { return .failure(.privateAddress) }
            host = .address(address)
        } else {
            let name = rawHost.lowercased().hasSuffix(".") ? String(rawHost.lowercased().dropLast()) : rawHost.lowercased()
            guard Self.isHostName(name) else { return .failure(.malformed) }
            // Names that are private by definition need no look-up to be refused.
            if !allowPrivate, name == "localhost" || name.hasSuffix(".localhost") || name.hasSuffix(".local")
                || name.hasSuffix(".internal") || !name.contains(".")
            {
                return .failure(.privateAddress)
            }
            host = .name(name)
        }
        // The URL as it is stored and sent: the scheme and a name in lower case, without a
        // trailing dot, exactly the name that is resolved and checked (the HTTP client is
        // told that name's checked address, and would look up any other spelling itself).
        var canonical = components
        canonical.scheme = scheme
        if case .name(let name) = host { canonical.host = name }
        guard let canonicalText = canonical.string else { return .failure(.malformed) }
        return .success(WebhookURL(text: canonicalText, isHTTPS: scheme == "https", host: host, port: port))
    }

    /// An IPv4 dotted quad or a bracketed IPv6 address, as bytes.
    static func address(_ host: String) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: 16)
        if host.hasPrefix("["), host.hasSuffix("]") {
            let inner = String(host.dropFirst().dropLast())
            return inet_pton(AF_INET6, inner, &bytes) == 1 ? bytes : nil
        }
        // Only the four-part decimal form: `inet_aton` would also read `127.1` or `0x7f.1`,
        // forms a name check must not let through as names either.
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts.allSatisfy({ !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isASCIIDigit) }) else {
            return nil
        }
        let values = parts.compactMap { UInt8($0) }
        return values.count == 4 ? values : nil
    }

    /// Letters, digits and hyphens in labels of 1 to 63, at most 253 in all; not all digits
    /// and dots (`127.1`, `2130706433`: addresses in disguise).
    static func isHostName(_ name: String) -> Bool {
        guard (1...253).contains(name.utf8.count) else { return false }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        guard labels.allSatisfy({ label in
            (1...63).contains(label.utf8.count) && label.first != "-" && label.last != "-"
                && label.utf8.allSatisfy { $0.isASCIILetterOrDigit || $0 == UInt8(ascii: "-") }
        }) else { return false }
        return !name.utf8.allSatisfy { $0 == UInt8(ascii: ".") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
            && !(labels.last?.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) } ?? false)
    }
}

/// Why a webhook URL is refused; `message` is what the API's 400 says of the field.
public enum WebhookURLError: Error, Sendable, Equatable {
    case malformed, tooLong, notHTTPS, credentials, fragment, privateAddress

    public var message: String {
        switch self {
        case .malformed: "must be an absolute URL with a host name or a public address, e.g. https://example.com/hooks/nps"
        case .tooLong: "must be at most \(WebhookURL.maximumLength) characters"
        case .notHTTPS: "must use https"
        case .credentials: "must not carry a user name or password (authenticate with the signature instead)"
        case .fragment: "must not have a fragment (#...)"
        case .privateAddress: "must reach a public internet address, not a loopback, private, link-local or otherwise reserved one"
        }
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}

extension UInt8 {
    fileprivate var isASCIILetterOrDigit: Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(self) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(self)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self)
    }
}
