import SurveyDomain

/// Collects every problem with a request's fields, each under its JSON path, so a client
/// learns all of them from one response.
struct FieldValidator {
    private(set) var errors: [Problem.FieldError] = []
    /// Rules broken by fields that are each valid (see `Problem.ruleViolation`).
    private(set) var brokenRules: [Problem.FieldError] = []

    mutating func fail(_ field: String, _ message: String) {
        errors.append(.init(field: field, message: message))
    }

    mutating func breaks(_ field: String, _ message: String) {
        brokenRules.append(.init(field: field, message: message))
    }

    /// A required string whose length, counted in Unicode characters as PostgreSQL counts
    /// them, lies in `length`. Blank strings and NUL characters (which PostgreSQL cannot
    /// store) are refused.
    mutating func string(_ object: [String: JSONValue], _ key: String, at path: String, length: ClosedRange<Int>) -> String? {
        guard let value = object[key], value != .null else {
            fail(path, "is required")
            return nil
        }
        guard case .string(let string) = value else {
            fail(path, "must be a string, not \(value.kind)")
            return nil
        }
        return checkString(string, at: path, length: length)
    }

    mutating func checkString(_ string: String, at path: String, length: ClosedRange<Int>) -> String? {
        let count = string.unicodeScalars.count
        if string.unicodeScalars.contains("\u{0}") {
            fail(path, "must not contain NUL characters")
            return nil
        }
        if string.trimmingASCIIWhitespace().isEmpty {
            fail(path, "must not be empty or blank")
            return nil
        }
        guard length.contains(count) else {
            fail(path, "must be \(length.lowerBound) to \(length.upperBound) characters long (got \(count))")
            return nil
        }
        return string
    }

    mutating func languageTag(_ object: [String: JSONValue], _ key: String, at path: String) -> LanguageTag? {
        guard let text = string(object, key, at: path, length: 1...LanguageTag.maximumLength) else { return nil }
        do {
            return try LanguageTag(parsing: text)
        } catch {
            fail(path, error.description)
            return nil
        }
    }

    /// An optional whole number in `range` (`nil` when absent or null; JSON numbers such
    /// as `30.0` are whole too).
    mutating func integer(_ object: [String: JSONValue], _ key: String, at path: String, range: ClosedRange<Int>) -> Int? {
        guard let value = object[key], value != .null else { return nil }
        guard case .number(let number) = value else {
            fail(path, "must be an integer, not \(value.kind)")
            return nil
        }
        guard number.rounded() == number, number >= Double(range.lowerBound), number <= Double(range.upperBound) else {
            fail(path, "must be an integer from \(range.lowerBound) to \(range.upperBound)")
            return nil
        }
        return Int(number)
    }

    /// An optional number in `range` (`nil` when absent or null).
    mutating func number(_ object: [String: JSONValue], _ key: String, at path: String, range: ClosedRange<Double>) -> Double? {
        guard let value = object[key], value != .null else { return nil }
        guard case .number(let number) = value else {
            fail(path, "must be a number, not \(value.kind)")
            return nil
        }
        guard range.contains(number) else {
            fail(path, "must be a number from \(range.lowerBound) to \(range.upperBound)")
            return nil
        }
        return number
    }

    /// Fails every member of `object` not in `known`: a misspelt setting must not be
    /// silently ignored. `at` names the object the members are in, for nested ones.
    mutating func rejectUnknown(_ object: [String: JSONValue], known: Set<String>, at parent: String? = nil) {
        for key in object.keys.sorted() where !known.contains(key) {
            fail(parent.map { "\($0).\(key)" } ?? key, "is not a known field; expected one of \(known.sorted().joined(separator: ", "))")
        }
    }

    /// Throws a 400 listing every error (and broken rule), if there is any; else a 422
    /// listing the broken rules, if there is any.
    func check() throws {
        if !errors.isEmpty { throw Problem.validation(errors + brokenRules) }
        if !brokenRules.isEmpty { throw Problem.ruleViolation(brokenRules) }
    }
}
