import Foundation
import Hummingbird

/// A JSON document as parsed (by `JSONParser`), before validation: parsing into loose
/// values first lets validation report every bad field with its path, instead of stopping
/// at the first type mismatch as `Decodable` would.
enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

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
        // No Content-Type is refused like a wrong one: a body of unknown type is not read as JSON.
        guard let contentType = request.headers[.contentType] else {
            throw Problem(status: .unsupportedMediaType, detail: "Send the body as application/json (the request has no Content-Type).")
        }
        guard let mediaType = MediaType(from: contentType),
            mediaType.type == .application && (mediaType.subType == "json" || mediaType.subType.hasSuffix("+json"))
        else {
            throw Problem(status: .unsupportedMediaType, detail: "Send the body as application/json.")
        }
        guard buffer.readableBytes > 0 else { throw Problem.malformedJSON("The body is empty; a JSON object is expected.") }
        let value: JSONValue
        do {
            value = try JSONParser.parse(Array(buffer.readableBytesView))
        } catch {
            throw Problem.malformedJSON("The body is not valid JSON: \(error.message) at byte \(error.offset).")
        }
        guard case .object(let object) = value else {
            throw Problem.malformedJSON("The body must be a JSON object, not \(value.kind).")
        }
        return object
    }
}

extension Request {
    /// The whole body, up to `limit` bytes; past it a 413 that names this limit (routes
    /// have their own: the webhooks' is smaller than the API's).
    func collectBody(upTo limit: Int) async throws -> ByteBuffer {
        do {
            return try await body.collect(upTo: limit)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw Problem.bodyTooLarge(limit: limit)
        }
    }
}
