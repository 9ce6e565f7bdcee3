/// One reply of an SMTP server (RFC 5321 §4.2): a three-digit code and its lines of text,
/// which may span several lines (`250-…` then `250 …`).
public struct SMTPReply: Sendable, Equatable, CustomStringConvertible {
    public var code: Int
    public var lines: [String]

    public init(code: Int, lines: [String]) {
        self.code = code
        self.lines = lines
    }

    /// 2xx: done. 3xx: go on (354 after DATA, 334 during AUTH).
    public var isPositive: Bool { (200..<400).contains(code) }
    /// 4xx: not now; the same command may succeed later.
    public var isTransient: Bool { (400..<500).contains(code) }
    /// 5xx: never, as sent.
    public var isPermanent: Bool { code >= 500 }

    /// The keywords of an EHLO reply's lines after the first (`PIPELINING`, `AUTH PLAIN LOGIN`, …),
    /// upper-cased, each with its parameters.
    public var extensions: [String: [String]] {
        var found: [String: [String]] = [:]
        for line in lines.dropFirst() {
            let words = line.split(separator: " ").map(String.init)
            guard let keyword = words.first else { continue }
            found[keyword.uppercased()] = words.dropFirst().map { $0.uppercased() }
        }
        return found
    }

    public var description: String { "\(code) \(lines.joined(separator: " / "))" }
}
