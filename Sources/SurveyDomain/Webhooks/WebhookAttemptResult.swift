import Foundation

/// What one attempt came to.
public struct WebhookAttemptResult: Sendable {
    public var startedAt: Date
    public var duration: Duration
    public var statusCode: Int?
    /// Why it failed when there is no status, or what was wrong with one (a redirect).
    public var error: String?
    /// The start of the answer, as printable text.
    public var responseExcerpt: String?
    /// Asked for by a 429 or 503.
    public var retryAfter: Duration?

    public init(
        startedAt: Date, duration: Duration, statusCode: Int? = nil, error: String? = nil, responseExcerpt: String? = nil,
        retryAfter: Duration? = nil
    ) {
        self.startedAt = startedAt
        self.duration = duration
        self.statusCode = statusCode
        self.error = error
        self.responseExcerpt = responseExcerpt
        self.retryAfter = retryAfter
    }

    public var succeeded: Bool { statusCode.map { (200..<300).contains($0) } ?? false }
    /// 410 Gone: the receiver says the endpoint is no more.
    public var gone: Bool { statusCode == 410 }

    /// Printable text only (control characters become spaces), at most `limit` characters.
    public static func excerpt(_ bytes: [UInt8], limit: Int) -> String? {
        guard !bytes.isEmpty else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        let printable = String(String.UnicodeScalarView(text.unicodeScalars.map { $0.properties.generalCategory == .control ? " " : $0 }))
        let trimmed = printable.trimmingCharacters(in: .whitespaces)
        return trimmed.isEmpty ? nil : String(trimmed.prefix(limit))
    }
}
