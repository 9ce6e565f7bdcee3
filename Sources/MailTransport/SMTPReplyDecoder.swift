import NIOCore

/// Splits what the server sends into replies: lines ending in CRLF (a bare LF is accepted,
/// as servers in the wild send it), `ddd-text` continuing a reply and `ddd text` ending it.
/// Bounded: a line longer than `maximumLineLength` or a reply of more than `maximumLines`
/// lines is an error, not memory without end.
struct SMTPReplyDecoder: ByteToMessageDecoder {
    typealias InboundOut = SMTPReply

    static let maximumLineLength = 4096
    static let maximumLines = 128

    private var pending: [String] = []
    private var pendingCode: Int?

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > Self.maximumLineLength { throw MailError(.protocolViolation, "a reply line longer than \(Self.maximumLineLength) bytes") }
            return .needMoreData
        }
        let length = newline - buffer.readerIndex
        guard length <= Self.maximumLineLength else { throw MailError(.protocolViolation, "a reply line longer than \(Self.maximumLineLength) bytes") }
        var bytes = buffer.readBytes(length: length + 1)!
        bytes.removeLast()
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        if let reply = try take(line: bytes) {
            context.fireChannelRead(wrapInboundOut(reply))
        }
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A partial reply at the end is not a reply: the handler fails what waited for one.
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }

    private mutating func take(line: [UInt8]) throws -> SMTPReply? {
        guard line.count >= 3, line[0..<3].allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            line.count == 3 || line[3] == UInt8(ascii: " ") || line[3] == UInt8(ascii: "-")
        else {
            throw MailError(.protocolViolation, "not an SMTP reply line: \(String(decoding: line.prefix(80), as: UTF8.self))")
        }
        let code = line[0..<3].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        if let pendingCode, pendingCode != code {
            throw MailError(.protocolViolation, "a reply's lines changed code from \(pendingCode) to \(code)")
        }
        let text = line.count > 4 ? String(decoding: line[4...], as: UTF8.self) : ""
        pending.append(text)
        guard pending.count <= Self.maximumLines else { throw MailError(.protocolViolation, "a reply of more than \(Self.maximumLines) lines") }
        if line.count > 3 && line[3] == UInt8(ascii: "-") {
            pendingCode = code
            return nil
        }
        defer {
            pending = []
            pendingCode = nil
        }
        return SMTPReply(code: code, lines: pending)
    }
}
