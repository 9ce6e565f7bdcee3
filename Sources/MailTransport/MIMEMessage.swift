import Foundation
import NIOCore

/// A message as RFC 5322 and MIME (RFC 2045–2047) write it: headers in ASCII (other text as
/// encoded words), and a `multipart/alternative` body of plain text and HTML, each UTF-8 in
/// quoted-printable, so that no line is longer than 76 characters whatever the text.
public struct MIMEMessage: Sendable {
    public var from: Mailbox
    public var to: String
    public var subject: String
    /// Without angle brackets: `random@sender.example`.
    public var messageID: String
    public var date: Date
    /// More headers, in order (`List-Unsubscribe`, `Content-Language`, …): ASCII names; values
    /// are encoded if they are not ASCII.
    public var headers: [(name: String, value: String)]
    public var text: String
    public var html: String

    public struct Mailbox: Sendable {
        public var name: String?
        public var address: String
        public init(name: String? = nil, address: String) {
            self.name = name
            self.address = address
        }
    }

    public init(
        from: Mailbox, to: String, subject: String, messageID: String, date: Date,
        headers: [(name: String, value: String)] = [], text: String, html: String
    ) {
        self.from = from
        self.to = to
        self.subject = subject
        self.messageID = messageID
        self.date = date
        self.headers = headers
        self.text = text
        self.html = html
    }

    /// The message's bytes, lines ending in CRLF. `boundary` separates the parts and must not
    /// occur in them (quoted-printable never produces `--` followed by it when it is random).
    public func encoded(boundary: String) -> ByteBuffer {
        var out = ByteBuffer()
        func line(_ text: String) {
            out.writeString(text)
            out.writeString("\r\n")
        }
        let fromHeader = from.name.map { "\(Self.phrase($0)) <\(from.address)>" } ?? from.address
        line("From: \(fromHeader)")
        line("To: \(to)")
        line("Subject: \(Self.headerText(subject))")
        line("Date: \(Self.rfc5322Date(date))")
        line("Message-ID: <\(messageID)>")
        for header in headers { line("\(header.name): \(Self.headerText(header.value))") }
        line("MIME-Version: 1.0")
        line("Content-Type: multipart/alternative; boundary=\"\(boundary)\"")
        line("")
        for (type, body) in [("text/plain", text), ("text/html", html)] {
            line("--\(boundary)")
            line("Content-Type: \(type); charset=utf-8")
            line("Content-Transfer-Encoding: quoted-printable")
            line("")
            out.writeString(Self.quotedPrintable(body))
            line("")
        }
        line("--\(boundary)--")
        return out
    }

    /// RFC 2045 §6.7: bytes outside printable ASCII, `=`, and spaces ending a line as `=XX`;
    /// soft line breaks (`=` CRLF) keep each line to 76 characters.
    static func quotedPrintable(_ text: String) -> String {
        var out = ""
        let lines = text.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false)
        for (number, line) in lines.enumerated() {
            if number > 0 { out += "\r\n" }
            var width = 0
            let bytes = Array(line.utf8)
            for (index, byte) in bytes.enumerated() {
                let isLast = index == bytes.count - 1
                let literal = (byte >= 33 && byte <= 126 && byte != UInt8(ascii: "=")) || ((byte == 32 || byte == 9) && !isLast)
                let token = literal ? String(UnicodeScalar(byte)) : "=" + hex(byte)
                // Room for the soft break's `=` unless this is the line's last token.
                if width + token.count > (isLast ? 76 : 75) {
                    out += "=\r\n"
                    width = 0
                }
                out += token
                width += token.count
            }
        }
        return out
    }

    private static func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
    }

    /// ASCII as it is; anything else as RFC 2047 encoded words (UTF-8, base64), each at most 75
    /// characters and never splitting a character.
    static func headerText(_ text: String) -> String {
        if text.utf8.allSatisfy({ $0 >= 32 && $0 < 127 }) { return text }
        var words: [String] = []
        var chunk: [UInt8] = []
        for character in text {
            let bytes = Array(String(character).utf8)
            // 36 bytes of text are 48 of base64, 60 with "=?UTF-8?B?" and "?=": a word stays
            // within 75 characters (RFC 2047 §2) and, after a header's name, its line within 78.
            if chunk.count + bytes.count > 36 {
                words.append("=?UTF-8?B?\(Data(chunk).base64EncodedString())?=")
                chunk = []
            }
            chunk += bytes
        }
        if !chunk.isEmpty { words.append("=?UTF-8?B?\(Data(chunk).base64EncodedString())?=") }
        return words.joined(separator: "\r\n ")
    }

    /// A display name: quoted when ASCII, encoded otherwise.
    static func phrase(_ name: String) -> String {
        guard name.utf8.allSatisfy({ $0 >= 32 && $0 < 127 }) else { return headerText(name) }
        return "\"" + name.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    static func rfc5322Date(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int?) -> String { String(format: "%02d", value ?? 0) }
        return "\(days[(parts.weekday ?? 1) - 1]), \(two(parts.day)) \(months[(parts.month ?? 1) - 1]) \(parts.year ?? 1970) "
            + "\(two(parts.hour)):\(two(parts.minute)):\(two(parts.second)) +0000"
    }
}
