import SurveyDomain
import Testing

@Suite struct EmailAddressTests {
    static let valid: [(String, String)] = [
        ("jane@example.com", "jane@example.com"),
        ("Jane.Doe+nps@Example.COM", "Jane.Doe+nps@example.com"),
        ("o'brien@sub.example.co.uk", "o'brien@sub.example.co.uk"),
        ("info@bücher.example", "info@xn--bcher-kva.example"),
        ("kontakt@MÜNCHEN.de", "kontakt@xn--mnchen-3ya.de"),
        // RFC 3492's sample (L): Chinese, simplified.
        ("a@他们为什么不说中文.example", "a@xn--ihqwcrb4cv8a8dqg056pqjye.example"),
        ("x@example.com.", "x@example.com"),
    ]

    static let label62 = String(repeating: "b", count: 62)
    static let tooLongAddress: String = String(repeating: "a", count: 64) + "@" + [label62, label62, label62, "com"].joined(separator: ".")
    static let tooLongDomain: String = "jane@" + [label62, label62, label62, label62, label62, "com"].joined(separator: ".")
    static let longLocal: String = String(repeating: "a", count: 65) + "@example.com"
    static let longLabel: String = "jane@" + String(repeating: "a", count: 64) + ".com"

    static let invalid: [(String, EmailAddress.Problem)] = [
        ("plainaddress", .shape),
        ("@example.com", .shape),
        ("jane@", .shape),
        ("jane@@example.com", .shape),
        ("jane..doe@example.com", .localPart),
        (".jane@example.com", .localPart),
        ("\"quoted\"@example.com", .localPart),
        ("jané@example.com", .localPart),
        ("jane doe@example.com", .localPart),
        (longLocal, .localPart),
        ("jane@localhost", .domain),
        ("jane@[192.0.2.1]", .domain),
        ("jane@exa_mple.com", .domain),
        ("jane@-example.com", .domain),
        ("jane@example..com", .domain),
        ("jane@example.123", .domain),
        (longLabel, .domain),
        (tooLongAddress, .length),
        (tooLongDomain, .domain),
    ]

    @Test(arguments: valid)
    func accepted(_ input: String, _ stored: String) throws {
        #expect(try EmailAddress(parsing: input).address == stored)
    }

    @Test(arguments: invalid)
    func refused(_ input: String, _ problem: EmailAddress.Problem) {
        #expect(throws: problem) { try EmailAddress(parsing: input) }
    }

    @Test func oneAddressWhateverItsCaseForOptOuts() throws {
        let upper = try EmailAddress(parsing: "Jane@Example.com")
        let lower = try EmailAddress(parsing: "jane@EXAMPLE.com")
        #expect(upper.canonical == lower.canonical)
        #expect("\(lower)" == "EmailAddress(redacted)")
    }
}
