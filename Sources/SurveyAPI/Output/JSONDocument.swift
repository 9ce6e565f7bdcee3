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
        var bytes: [UInt8] = []
        bytes.reserveCapacity(1024)
        write(to: &bytes)
        return bytes
    }

    // Written as bytes into one array, copied once into the response's buffer: a list of
    // surveys is mostly strings, and going through `String` appends, scalar by scalar, cost
    // more than the database round trip; `ByteBuffer`'s own writes check capacity and
    // uniqueness on every byte (`docs/BENCHMARKS.md`).
    private func write(to buffer: inout [UInt8]) {
        switch self {
        case .null: buffer.append(static: "null")
        case .bool(let value): buffer.append(static: value ? "true" : "false")
        case .integer(let value): buffer.append(contentsOf: String(value).utf8)
        case .number(let value):
            if value.isFinite, value == value.rounded(), abs(value) < 1e15 {
                buffer.append(contentsOf: String(Int64(value)).utf8)
            } else if value.isFinite {
                buffer.append(contentsOf: "\(value)".utf8)
            } else {
                buffer.append(static: "null")
            }
        case .string(let value): Self.writeString(value, to: &buffer)
        case .array(let values):
            buffer.append(UInt8(ascii: "["))
            for index in values.indices {
                if index > 0 { buffer.append(UInt8(ascii: ",")) }
                values[index].write(to: &buffer)
            }
            buffer.append(UInt8(ascii: "]"))
        case .object(let members):
            buffer.append(UInt8(ascii: "{"))
            for index in members.indices {
                if index > 0 { buffer.append(UInt8(ascii: ",")) }
                Self.writeString(members[index].0, to: &buffer)
                buffer.append(UInt8(ascii: ":"))
                members[index].1.write(to: &buffer)
            }
            buffer.append(UInt8(ascii: "}"))
        }
    }

    /// Writes `string` quoted, escaping what JSON requires (quote, backslash, controls) and
    /// what some parsers choke on or drop (DEL, the C1 controls, U+2028, U+2029 and
    /// U+FEFF). Runs of bytes that need nothing are copied whole.
    private static func writeString(_ string: String, to buffer: inout [UInt8]) {
        buffer.append(UInt8(ascii: "\""))
        var string = string
        string.withUTF8 { bytes in
            var runStart = 0
            var index = 0
            while index < bytes.count {
                let (length, scalar) = escapedScalar(in: bytes, at: index)
                guard length > 0 else {
                    index += 1
                    continue
                }
                buffer.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index]))
                writeEscape(scalar, to: &buffer)
                index += length
                runStart = index
            }
            buffer.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<bytes.count]))
        }
        buffer.append(UInt8(ascii: "\""))
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

    private static func writeEscape(_ scalar: UInt32, to buffer: inout [UInt8]) {
        switch scalar {
        case UInt32(UInt8(ascii: "\"")): buffer.append(static: "\\\"")
        case UInt32(UInt8(ascii: "\\")): buffer.append(static: "\\\\")
        case 0x0A: buffer.append(static: "\\n")
        case 0x0D: buffer.append(static: "\\r")
        case 0x09: buffer.append(static: "\\t")
        default:
            buffer.append(static: "\\u")
            for shift in stride(from: 12, through: 0, by: -4) {
                let digit = UInt8((scalar >> UInt32(shift)) & 0xF)
                buffer.append(digit < 10 ? UInt8(ascii: "0") + digit : UInt8(ascii: "a") + digit - 10)
            }
        }
    }
}

extension [UInt8] {
    fileprivate mutating func append(static text: StaticString) {
        text.withUTF8Buffer { append(contentsOf: $0) }
    }
}

/// A response body written as ordered JSON; sent with `JSONReply`.
protocol JSONResponse: Sendable {
    var json: JSONDocument { get }
}

extension Array: JSONResponse where Element: JSONResponse {
    var json: JSONDocument { .array(map { $0.json }) }
}

func jsonResponse(_ json: JSONDocument, status: HTTPResponse.Status, headers: HTTPFields = [:], contentType: String = "application/json; charset=utf-8") -> Response {
    var headers = headers
    headers[.contentType] = contentType
    return Response(status: status, headers: headers, body: .init(byteBuffer: json.encoded()))
}

/// A JSON response, with its status and extra headers.
struct JSONReply<Body: JSONResponse>: ResponseGenerator {
    var status: HTTPResponse.Status = .ok
    var headers: HTTPFields = [:]
    var body: Body

    func response(from request: Request, context: some RequestContext) throws -> Response {
        jsonResponse(body.json, status: status, headers: headers)
    }
}
