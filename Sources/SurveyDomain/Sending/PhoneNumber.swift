/// A phone number in E.164 form: `+`, then 8 to 15 digits, the first not 0.
/// Nothing else is accepted (no spaces, dashes, national formats): the API says so
/// rather than guess a country.
public struct PhoneNumber: Hashable, Sendable, CustomStringConvertible {
    public let e164: String

    public init?(e164 text: String) {
        let bytes = Array(text.utf8)
        guard bytes.count >= 9, bytes.count <= 16, bytes[0] == UInt8(ascii: "+"), bytes[1] != UInt8(ascii: "0"),
            bytes.dropFirst().allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else { return nil }
        e164 = text
    }

    /// Never the number itself: descriptions end up in logs.
    public var description: String { "PhoneNumber(redacted)" }
}
