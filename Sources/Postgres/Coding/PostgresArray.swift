/// One-dimensional arrays (`text[]`, `bigint[]`, ...) in PostgreSQL's text array format.
extension Array: PostgresEncodable where Element: PostgresEncodable {
    public var postgresText: String? {
        let items = map { element -> String in
            guard let text = element.postgresText else { return "NULL" }
            // Always quote: it is correct for every element type and spares special cases
            // for empty strings, "NULL", braces, commas and spaces.
            var quoted = "\""
            for character in text {
                if character == "\"" || character == "\\" { quoted.append("\\") }
                quoted.append(character)
            }
            quoted.append("\"")
            return quoted
        }
        return "{" + items.joined(separator: ",") + "}"
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
