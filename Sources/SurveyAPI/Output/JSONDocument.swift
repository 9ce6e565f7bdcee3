import Hummingbird

/// A JSON value whose object members keep the order they are written in, so responses
/// list their fields exactly as the API reference does (`id`, `name`, `interactionType`,
/// `questions`); Foundation's encoder on Linux does not keep declaration order.
enum JSONDocument: Sendable, Equatable {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONDocument])
    case object([(String, JSONDocument)])

    static func == (lhs: JSONDocument, rhs: JSONDocument) -> Bool {
        lhs.serialized() == rhs.serialized()
    }

    func serialized() -> String {
        String(decoding: utf8(), as: UTF8.self)
    }

    func encoded() -> ByteBuffer {
        ByteBuffer(bytes: utf8())
    }

    private func utf8() -> [UInt8] {
        var writer = JSONWriter()
        writer.value(self)
        return writer.bytes
    }
}

/// JSON text written straight into bytes: one array, copied once into the response's
/// buffer. `JSONDocument` writes itself through it, and the responses sent most often (a
/// page of surveys) write themselves directly, without building a document first; each
/// object and array of a tree is an allocation, and they cost more than the writing.
///
/// Commas are the writer's: `key(_:)` and `element()` put one before every member or
/// element but the first of its container.
struct JSONWriter {
    private(set) var bytes: [UInt8] = []
    /// Whether the next member or element is its container's first (no comma before it).
    private var nextIsFirst = true

    init() {
        bytes.reserveCapacity(1024)
    }

    mutating func beginObject() {
        bytes.append(UInt8(ascii: "{"))
        nextIsFirst = true
    }

    mutating func endObject() {
        bytes.append(UInt8(ascii: "}"))
        nextIsFirst = false
    }

    mutating func beginArray() {
        bytes.append(UInt8(ascii: "["))
        nextIsFirst = true
    }

    mutating func endArray() {
        bytes.append(UInt8(ascii: "]"))
        nextIsFirst = false
    }

    /// A member's name; its value comes next.
    mutating func key(_ name: String) {
        separate()
        writeString(name)
        bytes.append(UInt8(ascii: ":"))
        nextIsFirst = true
    }

    /// An array element comes next.
    mutating func element() {
        separate()
        nextIsFirst = true
    }

    /// Ends a line of newline-delimited JSON: the next value starts a document of its own.
    mutating func lineBreak() {
        bytes.append(UInt8(ascii: "\n"))
        nextIsFirst = true
    }

    mutating func null() { finish(static: "null") }

    mutating func bool(_ value: Bool) { finish(static: value ? "true" : "false") }

    mutating func integer(_ value: Int64) {
        bytes.append(contentsOf: String(value).utf8)
        nextIsFirst = false
    }

    mutating func number(_ value: Double) {
        if value.isFinite, value == value.rounded(), abs(value) < 1e15 {
            integer(Int64(value))
        } else if value.isFinite {
            bytes.append(contentsOf: "\(value)".utf8)
            nextIsFirst = false
        } else {
            null()
        }
    }

    mutating func string(_ value: String) {
        writeString(value)
        nextIsFirst = false
    }

    mutating func value(_ document: JSONDocument) {
        switch document {
        case .null: null()
        case .bool(let value): bool(value)
        case .integer(let value): integer(value)
        case .number(let value): number(value)
        case .string(let value): string(value)
        case .array(let values):
            beginArray()
            for value in values {
                element()
                self.value(value)
            }
            endArray()
        case .object(let members):
            beginObject()
            for (name, value) in members {
                key(name)
                self.value(value)
            }
            endObject()
        }
    }

    private mutating func separate() {
        if !nextIsFirst { bytes.append(UInt8(ascii: ",")) }
    }

    private mutating func finish(static text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
        nextIsFirst = false
    }

    /// Writes `string` quoted, escaping what JSON requires (quote, backslash, controls) and
    /// what some parsers choke on or drop (DEL, the C1 controls, U+2028, U+2029 and
    /// U+FEFF). Runs of bytes that need nothing are copied whole.
    private mutating func writeString(_ string: String) {
        bytes.append(UInt8(ascii: "\""))
        var string = string
        string.withUTF8 { utf8 in
            var runStart = 0
            var index = 0
            while index < utf8.count {
                let (length, scalar) = Self.escapedScalar(in: utf8, at: index)
                guard length > 0 else {
                    index += 1
                    continue
                }
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<index]))
                writeEscape(scalar)
                index += length
                runStart = index
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<utf8.count]))
        }
        bytes.append(UInt8(ascii: "\""))
    }
    /// The length in bytes and the value of the scalar at `index` if it must be escaped;
    /// a length of 0 if it needs nothing.
    private static func escapedScalar(in bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> (Int, UInt32) {
        let byte = bytes[index]
        switch byte {
        case 0x00..<0x20, UInt8(ascii: "\""), UInt8(ascii: "\\"), 0x7F:
            return (1, UInt32(byte))
        case 0xC2 where index + 1 < bytes.count && (0x80...0x9F).contains(bytes[index + 1]):
            return (2, UInt32(bytes[index + 1]))  // U+0080...U+009F
        case 0xE2 where index + 2 < bytes.count && bytes[index + 1] == 0x80 && (bytes[index + 2] == 0xA8 || bytes[index + 2] == 0xA9):
            return (3, 0x2000 | UInt32(bytes[index + 2] & 0x3F))  // U+2028, U+2029
        case 0xEF where index + 2 < bytes.count && bytes[index + 1] == 0xBB && bytes[index + 2] == 0xBF:
            return (3, 0xFEFF)  // a byte order mark, which some decoders drop wherever it is
        default:
            return (0, 0)
        }
    }

    private mutating func writeEscape(_ scalar: UInt32) {
        switch scalar {
        case UInt32(UInt8(ascii: "\"")): append(static: "\\\"")
        case UInt32(UInt8(ascii: "\\")): append(static: "\\\\")
        case 0x0A: append(static: "\\n")
        case 0x0D: append(static: "\\r")
        case 0x09: append(static: "\\t")
        default:
            append(static: "\\u")
            for shift in stride(from: 12, through: 0, by: -4) {
                let digit = UInt8((scalar >> UInt32(shift)) & 0xF)
                bytes.append(digit < 10 ? UInt8(ascii: "0") + digit : UInt8(ascii: "a") + digit - 10)
            }
        }
    }

    private mutating func append(static text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }
}

/// A response body written as ordered JSON; sent with `JSONReply`. A type sent often can
/// also write itself without its `json` tree (it must write the same text; a test checks).
protocol JSONResponse: Sendable {
    var json: JSONDocument { get }
    func write(to writer: inout JSONWriter)
}

extension JSONResponse {
    func write(to writer: inout JSONWriter) { writer.value(json) }
}

extension Array: JSONResponse where Element: JSONResponse {
    var json: JSONDocument { .array(map { $0.json }) }

    func write(to writer: inout JSONWriter) {
        writer.beginArray()
        for element in self {
            writer.element()
            element.write(to: &writer)
        }
        writer.endArray()
    }
}

func jsonResponse(_ json: JSONDocument, status: HTTPResponse.Status, headers: HTTPFields = [:], contentType: String = "application/json; charset=utf-8") -> Response {
    var writer = JSONWriter()
    writer.value(json)
    return jsonResponse(writer, status: status, headers: headers, contentType: contentType)
}

func jsonResponse(_ writer: JSONWriter, status: HTTPResponse.Status, headers: HTTPFields = [:], contentType: String = "application/json; charset=utf-8") -> Response {
    var headers = headers
    headers[.contentType] = contentType
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: writer.bytes)))
}

/// A JSON response, with its status and extra headers.
struct JSONReply<Body: JSONResponse>: ResponseGenerator {
    var status: HTTPResponse.Status = .ok
    var headers: HTTPFields = [:]
    var body: Body

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var writer = JSONWriter()
        body.write(to: &writer)
        return jsonResponse(writer, status: status, headers: headers)
    }
}
