#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import Synchronization

/// Writes each event as one line, in the format `LogLineFormat` gives: text for people
/// (the default), or JSON for log shippers (`LOG_FORMAT=json`).
///
/// Rather than swift-log's `StreamLogHandler`, which formats its metadata again each time
/// a member is set, even when nothing is logged: the API sets the request id on every
/// request's logger, and at `LOG_LEVEL=warning` that formatting was most of what logging
/// cost (`docs/BENCHMARKS.md`). Here metadata is only formatted for a line that is written.
public struct LineLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    public var metadataProvider: Logger.MetadataProvider?

    private let label: String
    private let format: LogLineFormat
    private let sink: LogSink

    /// `sink` defaults to the format's: standard error for text, standard output for JSON.
    public init(label: String, format: LogLineFormat, sink: LogSink? = nil, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.format = format
        self.sink = sink ?? format.standardSink
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        sink.write(format.line(currentTime(), event.level, label, event.message.description, merged))
    }
}

/// How an event becomes a line; separate from the clock and the output, to be tested.
public struct LogLineFormat: Sendable {
    let line: @Sendable (_ time: (seconds: Int, milliseconds: Int), Logger.Level, _ label: String, _ message: String, Logger.Metadata) -> String
    let standardSink: LogSink

    /// `2026-11-29T16:30:00.123Z info surveyd.serve: message request_id=…`, metadata sorted
    /// by name after the message.
    public static let text = LogLineFormat(line: TextLine.line, standardSink: .standardError)
    /// One JSON object per line:
    /// `{"ts":"2026-11-29T16:30:00.123Z","level":"info","logger":"surveyd.serve","msg":"…","request_id":"…"}`.
    /// Metadata members sit at the top level; one whose name collides with those four is
    /// written as `meta.<name>` rather than lost.
    public static let json = LogLineFormat(line: JSONLine.line, standardSink: .standardOutput)
}

private enum JSONLine {
    static func line(
        at time: (seconds: Int, milliseconds: Int), level: Logger.Level, label: String, message: String,
        metadata: Logger.Metadata
    ) -> String {
        var out = "{\"ts\":\""
        out += formatUTC(time)
        out += "\",\"level\":\""
        out += level.rawValue
        out += "\",\"logger\":"
        appendJSONString(label, to: &out)
        out += ",\"msg\":"
        appendJSONString(message, to: &out)
        for key in metadata.keys.sorted() {
            out += ","
            appendJSONString(reserved.contains(key) ? "meta." + key : key, to: &out)
            out += ":"
            appendJSONValue(metadata[key]!, to: &out)
        }
        out += "}\n"
        return out
    }

    private static let reserved: Set<String> = ["ts", "level", "logger", "msg"]
}

private enum TextLine {
    /// Control characters are escaped, so one event is one line whatever a message or
    /// value holds.
    static func line(
        at time: (seconds: Int, milliseconds: Int), level: Logger.Level, label: String, message: String,
        metadata: Logger.Metadata
    ) -> String {
        var line = formatUTC(time) + " " + level.rawValue + " " + label + ": "
        appendEscapingControls(message, to: &line)
        for key in metadata.keys.sorted() {
            line += " " + key + "="
            appendEscapingControls(metadata[key]!.description, to: &line)
        }
        return line + "\n"
    }

    private static func appendEscapingControls(_ text: String, to line: inout String) {
        guard text.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
            line += text
            return
        }
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": line += "\\n"
            case "\r": line += "\\r"
            case "\t": line += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                line += "\\x" + (scalar.value < 0x10 ? "0" : "") + String(scalar.value, radix: 16)
            default: line.unicodeScalars.append(scalar)
            }
        }
    }
}

/// Where log lines go: written whole, one writer at a time, so lines of concurrent
/// events never interleave.
public final class LogSink: Sendable {
    private let descriptor: Int32
    private let lock = Mutex(())
    private let capturing: Bool
    private let captured = Mutex<[String]>([])

    init(descriptor: Int32, capturing: Bool) {
        self.descriptor = descriptor
        self.capturing = capturing
    }

    public static let standardOutput = LogSink(descriptor: 1, capturing: false)
    public static let standardError = LogSink(descriptor: 2, capturing: false)
    /// Keeps the lines in memory (for tests that check what gets logged).
    public static func memory() -> LogSink { LogSink(descriptor: -1, capturing: true) }

    /// The lines kept by a `memory()` sink.
    public var lines: [String] { captured.withLock { $0 } }

    func write(_ line: String) {
        if capturing {
            captured.withLock { $0.append(line) }
            return
        }
        var bytes = Array(line.utf8)
        lock.withLock { _ in
            var offset = 0
            while offset < bytes.count {
                let written = bytes.withUnsafeMutableBytes { buffer in
                    #if canImport(Glibc)
                    Glibc.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                    #else
                    Darwin.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                    #endif
                }
                if written < 0 {
                    if errno == EINTR { continue }
                    return  // Nowhere to report a failing log; dropping the line is all we can do.
                }
                offset += written
            }
        }
    }
}

private func currentTime() -> (seconds: Int, milliseconds: Int) {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return (Int(now.tv_sec), Int(now.tv_nsec) / 1_000_000)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` from Unix seconds, without Foundation's formatters (cheap
/// enough for every line, and the same everywhere).
func formatUTC(_ time: (seconds: Int, milliseconds: Int)) -> String {
    var seconds = time_t(time.seconds)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    func pad(_ value: Int32, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }
    return pad(parts.tm_year + 1900, 4) + "-" + pad(parts.tm_mon + 1, 2) + "-" + pad(parts.tm_mday, 2) + "T"
        + pad(parts.tm_hour, 2) + ":" + pad(parts.tm_min, 2) + ":" + pad(parts.tm_sec, 2) + "."
        + pad(Int32(time.milliseconds), 3) + "Z"
}

func appendJSONString(_ string: String, to out: inout String) {
    out += "\""
    for scalar in string.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20 || scalar.value == 0x2028 || scalar.value == 0x2029:
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    out += "\""
}

private func appendJSONValue(_ value: Logger.Metadata.Value, to out: inout String) {
    switch value {
    case .string(let string): appendJSONString(string, to: &out)
    case .stringConvertible(let convertible): appendJSONString(convertible.description, to: &out)
    case .array(let values):
        out += "["
        for (index, element) in values.enumerated() {
            if index > 0 { out += "," }
            appendJSONValue(element, to: &out)
        }
        out += "]"
    case .dictionary(let dictionary):
        out += "{"
        for (index, key) in dictionary.keys.sorted().enumerated() {
            if index > 0 { out += "," }
            appendJSONString(key, to: &out)
            out += ":"
            appendJSONValue(dictionary[key]!, to: &out)
        }
        out += "}"
    }
}
