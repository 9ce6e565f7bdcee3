import Foundation
import MailTransport
import NIOCore
import Testing

@Suite struct MIMEMessageTests {
    static func message(subject: String = "Hello", text: String, html: String = "<p>x</p>", fromName: String? = "Waffle Shop") -> String {
        let message = MIMEMessage(
            from: .init(name: fromName, address: "surveys@sender.example"), to: "customer@example.org", subject: subject,
            messageID: "id-1@sender.example", date: Date(timeIntervalSince1970: 1_796_000_000),
            headers: [("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")], text: text, html: html)
        return String(buffer: message.encoded(boundary: "BOUNDARY"))
    }

    @Test func everyLineEndsInCRLFAndNoneIsLongerThan76() {
        let long = String(repeating: "é", count: 200) + " " + String(repeating: "a", count: 300) + " \n" + "tail "
        let text = Self.message(subject: "Über uns: " + String(repeating: "ß", count: 60), text: long)
        let lines = text.components(separatedBy: "\r\n")
        #expect(!text.replacingOccurrences(of: "\r\n", with: "").contains("\n"), "no bare LF")
        #expect(lines.allSatisfy { $0.utf8.count <= 78 }, "\(lines.map(\.utf8.count).max() ?? 0)")
        #expect(lines.allSatisfy { $0.utf8.allSatisfy { $0 < 128 } }, "7-bit clean")
    }

    @Test func quotedPrintableDecodesBackToTheText() throws {
        let original = "Hoe waarschijnlijk is het… = 100 % \t\n.line with a dot\nend with space "
        let text = Self.message(text: original)
        let body = try #require(text.components(separatedBy: "Content-Transfer-Encoding: quoted-printable\r\n\r\n").dropFirst().first)
        let part = try #require(body.components(separatedBy: "\r\n--BOUNDARY").first)
        #expect(Self.decodeQuotedPrintable(part) == original.replacingOccurrences(of: "\n", with: "\r\n"))
    }

    @Test func headersOutsideASCIIAreEncodedWords() {
        let text = Self.message(subject: "Wie wahrscheinlich würden Sie uns empfehlen?", text: "x", fromName: "Gaufres Dupré")
        #expect(text.contains("Subject: =?UTF-8?B?"))
        #expect(text.contains("From: =?UTF-8?B?R2F1ZnJlcyBEdXByw6k=?= <surveys@sender.example>"))
        #expect(text.contains("Date: Mon, 30 Nov 2026 00:53:20 +0000"))
        #expect(text.contains("Message-ID: <id-1@sender.example>\r\n"))
        #expect(text.contains("Content-Type: multipart/alternative; boundary=\"BOUNDARY\""))
        #expect(text.hasSuffix("--BOUNDARY--\r\n"))
    }

    @Test func configurationFromTheURL() throws {
        let relay = try SMTPConfiguration(url: "smtp://apikey%40relay:p%40ss@smtp.relay.example:2525")
        #expect(relay.host == "smtp.relay.example" && relay.port == 2525)
        #expect(relay.security == .startTLS(required: true))
        #expect(relay.credentials?.user == "apikey@relay" && relay.credentials?.password == "p@ss")
        let implicit = try SMTPConfiguration(url: "smtps://u:p@smtp.example")
        #expect(implicit.security == .implicitTLS && implicit.port == 465)
        let catcher = try SMTPConfiguration(url: "smtp://localhost:1025")
        #expect(catcher.security == .startTLS(required: false) && catcher.credentials == nil)
        for bad in ["http://x", "smtp://", "smtp://user@host", "smtp://host/path", "smtp://host?x=1", "not a url", "smtp://host:70000"] {
            #expect(throws: MailError.self, "\(bad)") { try SMTPConfiguration(url: bad) }
        }
    }

    static func decodeQuotedPrintable(_ text: String) -> String {
        var bytes: [UInt8] = []
        let input = Array(text.replacingOccurrences(of: "=\r\n", with: "").utf8)
        var index = 0
        while index < input.count {
            if input[index] == UInt8(ascii: "="), index + 2 < input.count + 0, let value = UInt8(String(decoding: input[(index + 1)...(index + 2)], as: UTF8.self), radix: 16) {
                bytes.append(value)
                index += 3
            } else {
                bytes.append(input[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
