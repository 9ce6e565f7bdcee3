import Foundation
import HTTPTypes
import SurveyAPI

/// `openapi.yaml`, loaded once, and a check of real responses against it: the operation
/// (path template and method), the status, the media type, the required headers and the
/// body's JSON Schema. A response the contract does not describe is a violation, so the
/// document cannot drift from the code without a test failing.
///
/// `@unchecked Sendable`: the parsed document is built in `init` and never mutated; it is
/// only read afterwards, from any thread.
public final class OpenAPIContract: @unchecked Sendable {
    public static let shared: OpenAPIContract = {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("openapi.yaml").path
        do {
            return try OpenAPIContract(document: OpenAPIDocument(contentsOf: path))
        } catch {
            fatalError("openapi.yaml cannot be loaded: \(error)")
        }
    }()

    let root: [String: Any]
    private let templates: [(segments: [Substring], path: String)]

    public init(document: OpenAPIDocument) throws {
        root = try JSONSerialization.jsonObject(with: Data(document.json.utf8)) as? [String: Any] ?? [:]
        let paths = (root["paths"] as? [String: Any] ?? [:]).keys
        // Literal segments before templated ones, so `/report/trend` wins over `/surveys/{id}`.
        templates = paths.map { ($0.split(separator: "/"), $0) }.sorted { lhs, rhs in
            lhs.segments.filter { $0.hasPrefix("{") }.count < rhs.segments.filter { $0.hasPrefix("{") }.count
        }
    }

    /// The path template a concrete path falls under, if the contract has one.
    public func template(for path: String) -> String? {
        let segments = path.split(separator: "/")
        return templates.first { template in
            template.segments.count == segments.count
                && zip(template.segments, segments).allSatisfy { $0.hasPrefix("{") || $0 == $1 }
        }?.path
    }

    /// Every operation: (path template, method), for sweeps over the whole API.
    public var operations: [(path: String, method: String, operation: [String: Any])] {
        (root["paths"] as? [String: Any] ?? [:]).flatMap { path, item in
            ((item as? [String: Any]) ?? [:]).compactMap { method, operation -> (String, String, [String: Any])? in
                guard ["get", "post", "put", "patch", "delete"].contains(method), let operation = operation as? [String: Any] else {
                    return nil
                }
                return (path, method.uppercased(), operation)
            }
        }.sorted { ($0.path, $0.method) < ($1.path, $1.method) }
    }

    /// What is wrong with this response for this request, by the contract; empty when nothing is.
    public func violations(
        method: HTTPRequest.Method, uri: String, status: Int, headers: HTTPFields, body: Data
    ) -> [String] {
        let path = String(uri.split(separator: "?", maxSplits: 1).first ?? "")
        // The dashboard is HTML for people (docs/DASHBOARD.md), not an operation of the API.
        if path == "/dashboard" || path.hasPrefix("/dashboard/") { return [] }
        guard let template = template(for: path) else {
            // Not an operation of the contract (a 404 for an unknown path, say): it must still be a problem.
            if status >= 400, headers[.contentType] != "application/problem+json" {
                return ["\(method) \(path) → \(status) is not application/problem+json"]
            }
            return []
        }
        let item = (root["paths"] as? [String: Any])?[template] as? [String: Any] ?? [:]
        guard let operation = item[method.rawValue.lowercased()] as? [String: Any] else {
            // A method the path does not have: 405 with Allow is the only right answer.
            if status == 405, headers[.allow] != nil { return [] }
            return ["\(method) \(template) is not in the contract, yet answered \(status)"]
        }
        let where_ = "\(method) \(template) → \(status)"
        let responses = operation["responses"] as? [String: Any] ?? [:]
        guard let documented = responses[String(status)] ?? responses["\(status / 100)XX"] ?? responses["default"] else {
            return ["\(where_): status not documented (documented: \(responses.keys.sorted().joined(separator: ", ")))"]
        }
        var problems: [String] = []
        let response = resolve(documented) as? [String: Any] ?? [:]
        for (name, header) in response["headers"] as? [String: Any] ?? [:] {
            let header = resolve(header) as? [String: Any] ?? [:]
            guard let value = headers[HTTPField.Name(name)!] else {
                if header["required"] as? Bool == true { problems.append("\(where_): required header \(name) missing") }
                continue
            }
            // A header is text; its schema speaks of what the text means.
            let schema = resolve(header["schema"] ?? [String: Any]()) as? [String: Any] ?? [:]
            let typed: Any = (schema["type"] as? String == "integer") ? (Int(value).map { NSNumber(value: $0) } ?? value as Any) : value
            var validator = SchemaValidator(contract: self)
            validator.validate(typed, against: schema, at: "header \(name)")
            problems += validator.errors.map { "\(where_): \($0)" }
        }
        let content = response["content"] as? [String: Any] ?? [:]
        if content.isEmpty {
            if !body.isEmpty { problems.append("\(where_): a body where none is documented") }
            return problems
        }
        let mediaType = headers[.contentType]?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard let media = content[mediaType] as? [String: Any] else {
            return problems + ["\(where_): content type \(mediaType) not documented (\(content.keys.sorted()))"]
        }
        // JSON documents only: `application/x-ndjson` is a sequence of them (its tests read
        // it line by line), CSV is text.
        guard mediaType == "application/json" || mediaType.hasSuffix("+json"), let schema = media["schema"] else { return problems }
        guard let value = try? JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed]) else {
            return problems + ["\(where_): body is not JSON"]
        }
        var validator = SchemaValidator(contract: self)
        validator.validate(value, against: schema, at: "$")
        // RFC 9457: a problem's status is the response's. The contract's error responses all use
        // the plain Problem schema (a per-status `const` made client generators drop them).
        if mediaType == "application/problem+json", let member = (value as? [String: Any])?["status"] as? NSNumber,
            member.doubleValue != Double(status)
        {
            validator.errors.append("$.status: \(member) is not the response's status")
        }
        return problems + validator.errors.map { "\(where_): \($0)" }
    }

    /// Follows a local `$ref` (`#/components/...`).
    func resolve(_ node: Any) -> Any {
        guard let object = node as? [String: Any], let reference = object["$ref"] as? String, reference.hasPrefix("#/") else {
            return node
        }
        var current: Any = root
        for part in reference.dropFirst(2).split(separator: "/") {
            let key = part.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            guard let next = (current as? [String: Any])?[key] else { return [String: Any]() }
            current = next
        }
        return resolve(current)
    }
}

/// The part of JSON Schema (2020-12) the contract uses.
struct SchemaValidator {
    let contract: OpenAPIContract
    var errors: [String] = []

    mutating func validate(_ value: Any, against schemaNode: Any, at path: String) {
        if let flag = schemaNode as? Bool {
            if !flag { errors.append("\(path): no value is allowed here") }
            return
        }
        if let reference = (schemaNode as? [String: Any])?["$ref"] as? String, (contract.resolve(schemaNode) as? [String: Any])?.isEmpty ?? true {
            errors.append("\(path): $ref \(reference) does not resolve")
            return
        }
        guard let schema = contract.resolve(schemaNode) as? [String: Any] else { return }
        for keyword in ["not", "uniqueItems", "exclusiveMinimum", "exclusiveMaximum", "minProperties", "maxProperties",
                        "patternProperties", "if", "prefixItems", "contains", "multipleOf"]
        where schema[keyword] != nil {
            errors.append("\(path): the checker does not implement \(keyword); teach it before the contract uses it")
        }
        if let all = schema["allOf"] as? [Any] { for part in all { validate(value, against: part, at: path) } }
        if let any = schema["anyOf"] as? [Any], !any.contains(where: { matches(value, $0, path) }) {
            errors.append("\(path): matches none of anyOf")
        }
        if let one = schema["oneOf"] as? [Any] {
            let count = one.filter { matches(value, $0, path) }.count
            if count != 1 { errors.append("\(path): matches \(count) of oneOf, not 1") }
        }
        if let expected = schema["const"], !equal(value, expected) { errors.append("\(path): is not the constant \(expected)") }
        if let options = schema["enum"] as? [Any], !options.contains(where: { equal(value, $0) }) {
            errors.append("\(path): \(value) is not one of \(options)")
        }
        if let type = schema["type"] {
            let types = (type as? [String]) ?? [(type as? String) ?? ""]
            guard types.contains(where: { isOfType(value, $0) }) else {
                errors.append("\(path): \(describe(value)) is not of type \(types.joined(separator: "|"))")
                return
            }
        }
        switch value {
        case let object as [String: Any]:
            let properties = schema["properties"] as? [String: Any] ?? [:]
            for name in schema["required"] as? [String] ?? [] where object[name] == nil {
                errors.append("\(path): required member \(name) missing")
            }
            for (name, needed) in schema["dependentRequired"] as? [String: [String]] ?? [:] where object[name] != nil {
                for other in needed where object[other] == nil {
                    errors.append("\(path): \(name) is present, so \(other) is required")
                }
            }
            for (name, member) in object {
                if let property = properties[name] {
                    validate(member, against: property, at: path + "." + name)
                } else if let additional = schema["additionalProperties"] {
                    validate(member, against: additional, at: path + "." + name)
                }
            }
        case let array as [Any]:
            if let items = schema["items"] { for (index, item) in array.enumerated() { validate(item, against: items, at: "\(path)[\(index)]") } }
            if let minimum = schema["minItems"] as? Int, array.count < minimum { errors.append("\(path): fewer than \(minimum) items") }
            if let maximum = schema["maxItems"] as? Int, array.count > maximum { errors.append("\(path): more than \(maximum) items") }
        case let string as String:
            let length = string.unicodeScalars.count
            if let minimum = schema["minLength"] as? Int, length < minimum { errors.append("\(path): shorter than \(minimum)") }
            if let maximum = schema["maxLength"] as? Int, length > maximum { errors.append("\(path): longer than \(maximum)") }
            if let pattern = schema["pattern"] as? String, string.range(of: pattern, options: .regularExpression) == nil {
                errors.append("\(path): \"\(string)\" does not match \(pattern)")
            }
            if schema["format"] as? String == "date-time",
                string.range(of: #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"#, options: .regularExpression) == nil
            {
                errors.append("\(path): \"\(string)\" is not an RFC 3339 date-time")
            }
        case let number as NSNumber where !isBoolean(number):
            let double = number.doubleValue
            if let minimum = (schema["minimum"] as? NSNumber)?.doubleValue, double < minimum { errors.append("\(path): \(double) < \(minimum)") }
            if let maximum = (schema["maximum"] as? NSNumber)?.doubleValue, double > maximum { errors.append("\(path): \(double) > \(maximum)") }
        default:
            break
        }
    }

    private func matches(_ value: Any, _ schema: Any, _ path: String) -> Bool {
        var probe = SchemaValidator(contract: contract)
        probe.validate(value, against: schema, at: path)
        return probe.errors.isEmpty
    }

    /// JSONSerialization gives booleans as a distinct NSNumber subclass (`__NSCFBoolean`).
    private func isBoolean(_ number: NSNumber) -> Bool { String(describing: type(of: number)).contains("Boolean") }

    private func isOfType(_ value: Any, _ type: String) -> Bool {
        switch type {
        case "null": return value is NSNull
        case "object": return value is [String: Any]
        case "array": return value is [Any]
        case "string": return value is String
        case "boolean": return (value as? NSNumber).map(isBoolean) ?? false
        case "integer":
            guard let number = value as? NSNumber, !isBoolean(number) else { return false }
            return number.doubleValue.rounded() == number.doubleValue
        case "number":
            guard let number = value as? NSNumber else { return false }
            return !isBoolean(number)
        default: return false
        }
    }

    private func equal(_ lhs: Any, _ rhs: Any) -> Bool {
        switch (lhs, rhs) {
        case let (l as String, r as String): return l == r
        case let (l as NSNumber, r as NSNumber): return l == r
        case (is NSNull, is NSNull): return true
        default: return false
        }
    }

    private func describe(_ value: Any) -> String {
        switch value {
        case is NSNull: "null"
        case is String: "a string"
        case is [Any]: "an array"
        case is [String: Any]: "an object"
        case let number as NSNumber: isBoolean(number) ? "a boolean" : "a number"
        default: "\(type(of: value))"
        }
    }
}
