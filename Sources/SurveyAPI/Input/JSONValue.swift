import Foundation
import Hummingbird

/// A JSON document as parsed, before validation: decoding into loose values first lets
/// validation report every bad field with its path, instead of stopping at the first
/// type mismatch as `Decodable` would.
enum JSONValue: Decodable, Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    /// How the value is named in error messages.
    var kind: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    /// Reads a request body as one JSON object: 415 for another content type, 413 past
    /// the size limit, 400 for anything that is not a JSON object.
    static func object(from request: Request, context: some RequestContext) async throws -> [String: JSONValue] {
        try object(from: try await request.body.collect(upTo: context.maxUploadSize), request: request)
    }

    /// The same, for a body already read (when its bytes are needed too).
    static func object(from buffer: ByteBuffer, request: Request) throws -> [String: JSONValue] {
        if let contentType = request.headers[.contentType], let mediaType = MediaType(from: contentType),
            !(mediaType.type == .application && (mediaType.subType == "json" || mediaType.subType.hasSuffix("+json")))
        {
            throw Problem(status: .unsupportedMediaType, detail: "Send the body as application/json.")
        }
        guard buffer.readableBytes > 0 else { throw Problem.malformedJSON("The body is empty; a JSON object is expected.") }
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: Data(buffer.readableBytesView))
        } catch {
            throw Problem.malformedJSON("The body could not be parsed as JSON.")
        }
        guard case .object(let object) = value else {
            throw Problem.malformedJSON("The body must be a JSON object, not \(value.kind).")
        }
        return object
    }
}
