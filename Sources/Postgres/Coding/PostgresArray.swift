/// One-dimensional arrays (`text[]`, `bigint[]`, ...) in PostgreSQL's text array format.
extension Array: PostgresEncodable where Element: PostgresEncodable {
    public var postgresText: String? {
        // Built as bytes: arrays of a thousand values are common (set-based inserts).
        var bytes: [UInt8] = [UInt8(ascii: "{")]
        bytes.reserveCapacity(count * 16)
        for (index, element) in enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            guard let text = element.postgresText else {
                bytes.append(contentsOf: "NULL".utf8)
                continue
            }
            // Always quote: it is correct for every element type and spares special cases
            // for empty strings, "NULL", braces, commas and spaces.
            bytes.append(UInt8(ascii: "\""))
            for byte in text.utf8 {
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { bytes.append(UInt8(ascii: "\\")) }
                bytes.append(byte)
            }
            bytes.append(UInt8(ascii: "\""))
        }
        bytes.append(UInt8(ascii: "}"))
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension Array: PostgresDecodable where Element: PostgresDecodable {
    public init(postgresText text: String) throws(PostgresError) {
        let elements = try PostgresArrayParser.parse(text)
        var result = [Element]()
        result.reserveCapacity(elements.count)
        for element in elements {
            guard let element else {
                throw PostgresError(code: .decoding, message: "NULL element in array of \(Element.self)")
            }
            result.append(try Element(postgresText: element))
        }
        self = result
    }
}

enum PostgresArrayParser {
    /// Parses a one-dimensional array literal such as `{a,"b c",NULL,"d\"e"}`.
    static func parse(_ text: String) throws(PostgresError) -> [String?] {
        var chars = Array(text.unicodeScalars)
        // A lower bound decoration like `[0:1]={...}` only appears for non-default bounds.
        if let equals = chars.firstIndex(of: "="), chars.first == "[" {
            chars = Array(chars[(equals + 1)...])
        }
        guard chars.first == "{", chars.last == "}" else { throw .decoding(text, as: [String].self) }
        if chars.count == 2 { return [] }
        var result = [String?]()
        var index = 1
        let end = chars.count - 1
        while index < end {
            var value = String.UnicodeScalarView()
            var quoted = false
            if chars[index] == "\"" {
                quoted = true
                index += 1
                while index < end, chars[index] != "\"" {
                    if chars[index] == "\\" { index += 1 }
                    guard index < end else { throw .decoding(text, as: [String].self) }
                    value.append(chars[index])
                    index += 1
                }
                guard index < end else { throw .decoding(text, as: [String].self) }
                index += 1  // closing quote
            } else {
                while index < end, chars[index] != "," {
                    if chars[index] == "{" { throw .decoding(text, as: [String].self) }  // nested
                    value.append(chars[index])
                    index += 1
                }
            }
            let string = String(value)
            result.append(!quoted && string == "NULL" ? nil : string)
            if index < end {
                guard chars[index] == "," else { throw .decoding(text, as: [String].self) }
                index += 1
            }
        }
        return result
    }
}

extension Array: PostgresOptionalDecodableOrValue where Element: PostgresDecodable {}
