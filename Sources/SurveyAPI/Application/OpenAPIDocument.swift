import Foundation
import Yams

/// The API's contract (`openapi.yaml` at the repository root), served as written and as
/// JSON. Read once at start; a document that does not parse stops the start.
public struct OpenAPIDocument: Sendable {
    public let yaml: String
    public let json: String

    public init(yaml: String) throws {
        guard let loaded = try Yams.load(yaml: yaml) else { throw Invalid(message: "the document is empty") }
        let object = try Self.jsonCompatible(loaded, at: "$")
        guard object is [String: Any] else { throw Invalid(message: "the document is not a mapping") }
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        self.yaml = yaml
        self.json = String(decoding: data, as: UTF8.self)
    }

    public init(contentsOf path: String) throws {
        do {
            try self.init(yaml: try String(contentsOfFile: path, encoding: .utf8))
        } catch let error as Invalid {
            throw Invalid(message: "\(path): \(error.message)")
        }
    }

    public struct Invalid: Error, CustomStringConvertible {
        public let message: String
        public var description: String { "invalid OpenAPI document: \(message)" }
    }

    /// YAML allows what JSON does not: non-string keys (`200:` under `responses`), dates.
    private static func jsonCompatible(_ value: Any, at path: String) throws -> Any {
        switch value {
        case let mapping as [AnyHashable: Any]:
            var object: [String: Any] = [:]
            for (key, member) in mapping {
                let name = "\(key.base)"
                object[name] = try jsonCompatible(member, at: path + "." + name)
            }
            return object
        case let sequence as [Any]:
            return try sequence.enumerated().map { try jsonCompatible($0.element, at: "\(path)[\($0.offset)]") }
        case is String, is Bool, is Int, is Double, is NSNull:
            return value
        case let date as Date:
            return ISO8601DateFormatter().string(from: date)
        default:
            throw Invalid(message: "\(path) holds a \(type(of: value)), which JSON cannot")
        }
    }
}
