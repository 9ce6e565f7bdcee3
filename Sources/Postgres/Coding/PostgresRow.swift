/// The rows a statement returned, copied out of libpq's result so no C memory outlives the call.
public struct PostgresRows: Sendable, RandomAccessCollection {
    public let columns: [String]
    let values: [[String?]]
    /// Rows changed by an `INSERT`/`UPDATE`/`DELETE`, as reported by the server.
    public let affectedRows: Int

    init(columns: [String], values: [[String?]], affectedRows: Int) {
        self.columns = columns
        self.values = values
        self.affectedRows = affectedRows
    }

    public var startIndex: Int { values.startIndex }
    public var endIndex: Int { values.endIndex }
    public subscript(position: Int) -> PostgresRow {
        PostgresRow(columns: columns, values: values[position])
    }

    /// The first row, or `nil` if the statement returned none.
    public var single: PostgresRow? { first }

    /// The row a statement always returns (`RETURNING`, an aggregate); its absence is a bug.
    public func one() throws(PostgresError) -> PostgresRow {
        guard let row = first else {
            throw PostgresError(code: .protocolViolation, message: "expected a row, got none")
        }
        return row
    }
}

/// One row. Decode columns in order, with the types the statement selects:
///
///     let (id, name, createdAt) = try row.decode((Int64, String, Date).self)
public struct PostgresRow: Sendable {
    public let columns: [String]
    @usableFromInline let values: [String?]

    // Inlinable, so that each call site's tuple of types is specialised there: generic
    // across the module boundary, every column cost a metadata lookup and a dynamic cast.
    @inlinable
    public func decode<each Column: PostgresOptionalDecodableOrValue>(
        _ types: (repeat each Column).Type
    ) throws(PostgresError) -> (repeat each Column) {
        var index = 0
        func next<T: PostgresOptionalDecodableOrValue>(_ type: T.Type) throws(PostgresError) -> T {
            guard index < values.count else {
                throw PostgresError(code: .decoding, message: "row has \(values.count) columns, asked for more")
            }
            defer { index += 1 }
            do {
                return try T.decodeColumn(values[index])
            } catch {
                var error = error
                error.message = "column \(index) (\(columns[index])): " + (error.message ?? "")
                throw error
            }
        }
        return (repeat try next((each Column).self))
    }

    /// Decodes the column named `name`.
    public func decode<T: PostgresOptionalDecodableOrValue>(_ type: T.Type, column name: String) throws(PostgresError) -> T {
        guard let index = columns.firstIndex(of: name) else {
            throw PostgresError(code: .decoding, message: "no column named \(name)")
        }
        return try T.decodeColumn(values[index])
    }
}

/// Anything a column decodes into: a `PostgresDecodable` (NULL is an error) or an
/// `Optional` of one (NULL is `nil`).
public protocol PostgresOptionalDecodableOrValue: Sendable {
    static func decodeColumn(_ text: String?) throws(PostgresError) -> Self
}

extension PostgresDecodable {
    @inlinable
    public static func decodeColumn(_ text: String?) throws(PostgresError) -> Self {
        try decode(postgresText: text)
    }
}

extension String: PostgresOptionalDecodableOrValue {}
extension Bool: PostgresOptionalDecodableOrValue {}
extension Int: PostgresOptionalDecodableOrValue {}
extension Int64: PostgresOptionalDecodableOrValue {}
extension Int32: PostgresOptionalDecodableOrValue {}
extension Double: PostgresOptionalDecodableOrValue {}

extension Optional: PostgresOptionalDecodableOrValue where Wrapped: PostgresDecodable {
    @inlinable
    public static func decodeColumn(_ text: String?) throws(PostgresError) -> Wrapped? {
        guard let text else { return nil }
        return try Wrapped(postgresText: text)
    }
}
