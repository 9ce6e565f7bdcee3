/// A statement and its parameters, built by string interpolation so that values can only
/// ever travel as parameters:
///
///     let query: PostgresQuery = "SELECT name FROM surveys WHERE company_id = \(companyID) AND id = \(id)"
///     // sql: "SELECT name FROM surveys WHERE company_id = $1 AND id = $2", bindings: ["7", "42"]
public struct PostgresQuery: Sendable, Hashable, ExpressibleByStringInterpolation {
    public private(set) var sql: String
    /// The parameters in PostgreSQL's text format, `nil` for `NULL`.
    public private(set) var bindings: [String?]
    /// Whether a connection may prepare this text once and reuse it on later calls
    /// (`PreparedStatements`). True for statements written as literals or interpolations:
    /// their text is fixed at the call site. False by default for `unsafeSQL`, whose text
    /// may be built anew on each call (a report's, a `SET` with a value in it): caching it
    /// would fill the cache, and after five runs the server may choose a generic plan that
    /// suits some parameter values poorly.
    public var isPreparable: Bool

    public init(unsafeSQL sql: String, bindings: [String?] = [], preparable: Bool = false) {
        self.sql = sql
        self.bindings = bindings
        self.isPreparable = preparable
    }

    public init(stringLiteral value: String) {
        self.init(unsafeSQL: value, preparable: true)
    }

    public init(stringInterpolation: StringInterpolation) {
        self.init(
            unsafeSQL: stringInterpolation.sql, bindings: stringInterpolation.bindings,
            preparable: stringInterpolation.isFixedText)
    }

    public struct StringInterpolation: StringInterpolationProtocol {
        var sql: String
        var bindings: [String?]
        /// False once a spliced identifier made the text depend on a value.
        var isFixedText = true

        public init(literalCapacity: Int, interpolationCount: Int) {
            sql = ""
            sql.reserveCapacity(literalCapacity + interpolationCount * 3)
            bindings = []
            bindings.reserveCapacity(interpolationCount)
        }

        public mutating func appendLiteral(_ literal: String) {
            sql.append(literal)
        }

        /// Binds a value as the next `$n` parameter.
        public mutating func appendInterpolation(_ value: some PostgresEncodable) {
            bindings.append(value.postgresText)
            sql.append("$\(bindings.count)")
        }

        /// Splices an identifier (a table or column name chosen by the program), quoted so it
        /// can never be read as anything but a name.
        public mutating func appendInterpolation(identifier: String) {
            isFixedText = false
            sql.append("\"" + identifier.replacingAll("\"", with: "\"\"") + "\"")
        }

        /// Splices SQL text fixed when the program was compiled (a column list shared by
        /// several statements, `ASC` or `DESC`): never a value, so the statement stays
        /// preparable, one text per fragment chosen.
        public mutating func appendInterpolation(fragment: StaticString) {
            sql.append(fragment.description)
        }

        /// Binds an optional value; `nil` is SQL `NULL`.
        public mutating func appendInterpolation<Value: PostgresEncodable>(_ value: Value?) {
            bindings.append(value?.postgresText)
            sql.append("$\(bindings.count)")
        }
    }
}

extension String {
    fileprivate func replacingAll(_ target: Character, with replacement: String) -> String {
        var result = ""
        for character in self {
            if character == target { result += replacement } else { result.append(character) }
        }
        return result
    }
}
