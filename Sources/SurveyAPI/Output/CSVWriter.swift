/// RFC 4180 CSV written straight into bytes (UTF-8, CRLF line ends), with OWASP's
/// CSV-injection defence: a cell a spreadsheet would read as a formula (starting with `=`,
/// `+`, `-`, `@`, a tab or a carriage return) gets a leading `'` and is quoted, so it shows
/// as the text it is and is never executed; a cell holding a `;` is quoted too.
struct CSVWriter {
    private(set) var bytes: [UInt8] = []
    private var rowIsEmpty = true

    init(capacity: Int = 64 * 1024) {
        bytes.reserveCapacity(capacity)
    }

    /// The next cell of the row; `nil` is an empty cell.
    mutating func cell(_ value: String?) {
        if !rowIsEmpty { bytes.append(UInt8(ascii: ",")) }
        rowIsEmpty = false
        guard var value else { return }
        value.withUTF8 { write($0) }
    }

    /// A number: never needs quoting or neutralising.
    mutating func cell(_ value: Int64?) {
        if !rowIsEmpty { bytes.append(UInt8(ascii: ",")) }
        rowIsEmpty = false
        if let value { bytes.append(contentsOf: String(value).utf8) }
    }

    mutating func endRow() {
        bytes.append(UInt8(ascii: "\r"))
        bytes.append(UInt8(ascii: "\n"))
        rowIsEmpty = true
    }

    mutating func removeAll() {
        bytes.removeAll(keepingCapacity: true)
        rowIsEmpty = true
    }

    private mutating func write(_ utf8: UnsafeBufferPointer<UInt8>) {
        let formula = utf8.first.map(Self.startsFormula) ?? false
        guard formula || utf8.contains(where: Self.needsQuotes) else {
            bytes.append(contentsOf: utf8)
            return
        }
        bytes.append(UInt8(ascii: "\""))
        if formula { bytes.append(UInt8(ascii: "'")) }
        for byte in utf8 {
            if byte == UInt8(ascii: "\"") { bytes.append(byte) }
            bytes.append(byte)
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private static func startsFormula(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "=") || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "@")
            || byte == 0x09 || byte == 0x0D
    }

    /// RFC 4180's, and `;`: spreadsheets in locales whose list separator it is (Belgium,
    /// France, the Netherlands) split unquoted cells on it, and a formula could start
    /// after one.
    private static func needsQuotes(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: ",") || byte == UInt8(ascii: ";") || byte == UInt8(ascii: "\"") || byte == 0x0A || byte == 0x0D
    }
}
