/// How many SMS a message costs: GSM-7 fits 160 characters in one message and 153 per
/// part when concatenated; one character outside GSM-7 makes the whole message UCS-2,
/// 70 and 67 (counted in UTF-16 code units). GSM-7 extension characters (`€`, `[`, ...)
/// take two septets. This is what the company's invoice is based on.
public struct SMSSegments: Equatable, Sendable {
    public enum Encoding: String, Sendable { case gsm7 = "GSM-7", ucs2 = "UCS-2" }

    public var encoding: Encoding
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    public var units: Int
    public var count: Int

    public init(encoding: Encoding, units: Int, count: Int) {
        self.encoding = encoding
        self.units = units
        self.count = count
    }

    public init(body: String) {
        var septets = 0
        var isGSM = true
        for scalar in body.unicodeScalars {
            if Self.basic.contains(scalar) {
                septets += 1
            } else if Self.extended.contains(scalar) {
                septets += 2
            } else {
                isGSM = false
                break
            }
        }
        if isGSM {
            encoding = .gsm7
            units = septets
            count = septets <= 160 ? 1 : Self.parts(septets, per: 153)
        } else {
            encoding = .ucs2
            units = body.utf16.count
            count = units <= 70 ? 1 : Self.parts(units, per: 67)
        }
        if units == 0 { count = 1 }
    }

    private static func parts(_ units: Int, per size: Int) -> Int { (units + size - 1) / size }

    /// GSM 03.38 basic character set.
    static let basic: Set<Unicode.Scalar> = Set(
        ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
            + "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà").unicodeScalars)
    /// GSM 03.38 extension table (escape + character: two septets).
    static let extended: Set<Unicode.Scalar> = Set("^{}\\[~]|€\u{0C}".unicodeScalars)
}
