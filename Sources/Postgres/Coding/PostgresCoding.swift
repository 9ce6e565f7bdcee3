import Foundation

/// A Swift value that can be sent as a query parameter.
///
/// Parameters travel in PostgreSQL's text format with their type left for the server to
/// infer from the statement, so `$1` compares as whatever the column is. Values are never
/// spliced into the SQL text.
public protocol PostgresEncodable: Sendable {
    /// The value in PostgreSQL's text input format; `nil` sends SQL `NULL`.
    var postgresText: String? { get }
}

/// A Swift value that can be read from a result column (text format).
public protocol PostgresDecodable: Sendable {
    init(postgresText text: String) throws(PostgresError)
}

extension PostgresError {
    static func decoding(_ text: String, as type: Any.Type) -> PostgresError {
        PostgresError(code: .decoding, message: "cannot decode \(text.prefix(64).debugDescription) as \(type)")
    }
}

extension String: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { self }
    public init(postgresText text: String) { self = text }
}

extension Bool: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { self ? "t" : "f" }
    public init(postgresText text: String) throws(PostgresError) {
        switch text {
        case "t", "true": self = true
        case "f", "false": self = false
        default: throw .decoding(text, as: Bool.self)
        }
    }
}

extension Int: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { String(self) }
    public init(postgresText text: String) throws(PostgresError) {
        guard let value = Int(text) else { throw .decoding(text, as: Int.self) }
        self = value
    }
}

extension Int64: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { String(self) }
    public init(postgresText text: String) throws(PostgresError) {
        guard let value = Int64(text) else { throw .decoding(text, as: Int64.self) }
        self = value
    }
}

extension Int32: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { String(self) }
    public init(postgresText text: String) throws(PostgresError) {
        guard let value = Int32(text) else { throw .decoding(text, as: Int32.self) }
        self = value
    }
}

extension Double: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? {
        if isNaN { return "NaN" }
        if isInfinite { return self > 0 ? "Infinity" : "-Infinity" }
        return "\(self)"
    }
    public init(postgresText text: String) throws(PostgresError) {
        guard let value = Double(text) else { throw .decoding(text, as: Double.self) }
        self = value
    }
}

extension UUID: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { uuidString.lowercased() }
    public init(postgresText text: String) throws(PostgresError) {
        guard let value = UUID(uuidString: text) else { throw .decoding(text, as: UUID.self) }
        self = value
    }
}

extension Optional: PostgresEncodable where Wrapped: PostgresEncodable {
    public var postgresText: String? { self.flatMap(\.postgresText) }
}

extension PostgresDecodable {
    @inlinable
    public static func decode(postgresText text: String?) throws(PostgresError) -> Self {
        guard let text else {
            throw PostgresError(code: .decoding, message: "unexpected NULL for \(Self.self)")
        }
        return try Self(postgresText: text)
    }
}

/// Bytes, sent and read as `bytea` in hex format.
extension Data: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? {
        // A lookup table, not String(format:): this runs for every hash in a 1000-item send.
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var bytes = [UInt8](repeating: 0, count: 2 + count * 2)
        bytes[0] = UInt8(ascii: "\\")
        bytes[1] = UInt8(ascii: "x")
        var index = 2
        for byte in self {
            bytes[index] = digits[Int(byte >> 4)]
            bytes[index + 1] = digits[Int(byte & 0x0F)]
            index += 2
        }
        return String(decoding: bytes, as: UTF8.self)
    }
    public init(postgresText text: String) throws(PostgresError) {
        guard text.hasPrefix("\\x"), text.utf8.count % 2 == 0 else { throw .decoding(text, as: Data.self) }
        var bytes = [UInt8]()
        bytes.reserveCapacity((text.utf8.count - 2) / 2)
        var high: UInt8?
        for character in text.utf8.dropFirst(2) {
            guard let nibble = Self.hexValue(character) else { throw .decoding(text, as: Data.self) }
            if let h = high {
                bytes.append(h << 4 | nibble)
                high = nil
            } else {
                high = nibble
            }
        }
        self = Data(bytes)
    }
    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

extension UUID: PostgresOptionalDecodableOrValue {}
extension Data: PostgresOptionalDecodableOrValue {}
