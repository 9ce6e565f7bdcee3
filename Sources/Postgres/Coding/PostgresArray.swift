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
    ///
    /// Works on the UTF-8 bytes: every structural character is ASCII, so no multi-byte
    /// sequence can be mistaken for one, and elements are sliced out whole.
    static func parse(_ text: String) throws(PostgresError) -> [String?] {
        var text = text
        return try text.withUTF8 { parse(bytes: $0) }.get()
    }

    private static func parse(bytes all: UnsafeBufferPointer<UInt8>) -> Result<[String?], PostgresError> {
        var malformed: Result<[String?], PostgresError> {
            .failure(.decoding(String(decoding: all, as: UTF8.self), as: [String].self))
        }
        var bytes = all[...]
        // A lower bound decoration like `[0:1]={...}` only appears for non-default bounds.
        if bytes.first == UInt8(ascii: "["), let equals = bytes.firstIndex(of: UInt8(ascii: "=")) {
            bytes = bytes[(equals + 1)...]
        }
        guard bytes.count >= 2, bytes.first == UInt8(ascii: "{"), bytes.last == UInt8(ascii: "}") else { return malformed }
        var index = bytes.startIndex + 1
        let end = bytes.endIndex - 1
        var result = [String?]()
        if index == end { return .success(result) }
        while index < end {
            if bytes[index] == UInt8(ascii: "\"") {
                index += 1
                let start = index
                var escaped = false
                while index < end, bytes[index] != UInt8(ascii: "\"") {
                    if bytes[index] == UInt8(ascii: "\\") {
                        escaped = true
                        index += 1
                    }
                    index += 1
                }
                guard index < end else { return malformed }
                result.append(escaped ? unescape(all[start..<index]) : String(decoding: all[start..<index], as: UTF8.self))
                index += 1  // closing quote
            } else {
                let start = index
                while index < end, bytes[index] != UInt8(ascii: ",") {
                    if bytes[index] == UInt8(ascii: "{") { return malformed }  // nested
                    index += 1
                }
                let element = all[start..<index]
                result.append(element.elementsEqual("NULL".utf8) ? nil : String(decoding: element, as: UTF8.self))
            }
            if index < end {
                guard bytes[index] == UInt8(ascii: ",") else { return malformed }
                index += 1
                if index == end { return malformed }  // a trailing comma
            }
        }
        return .success(result)
    }

    private static func unescape(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        while index < bytes.endIndex {
            if bytes[index] == UInt8(ascii: "\\") { index += 1 }
            guard index < bytes.endIndex else { break }
            output.append(bytes[index])
            index += 1
        }
        return String(decoding: output, as: UTF8.self)
    }
}

extension Array: PostgresOptionalDecodableOrValue where Element: PostgresDecodable {}
