import Foundation

/// A strict reader of the ISO 8601 forms a report accepts:
/// `2026-03-01`, `2026-03-01T10:15`, `2026-03-01T10:15:30`, `2026-03-01T10:15:30.123456`,
/// each date-time optionally followed by `Z`, `±hh:mm`, `±hhmm` or `±hh`.
enum ISODateParser {
    enum Parsed: Equatable {
        /// A calendar day.
        case day(year: Int, month: Int, day: Int)
        /// A wall time with no offset, read in the report's zone.
        case local(DateComponents)
        /// An instant.
        case instant(Date)

        /// The instant this stands for in `calendar`'s zone. A plain day as an end means
        /// the end of that day (the next midnight).
        func resolved(in calendar: Calendar, asEnd: Bool) -> Date? {
            switch self {
            case .instant(let date): return date
            case .local(let components): return calendar.date(from: components)
            case .day(let year, let month, let day):
                guard let midnight = calendar.date(from: DateComponents(year: year, month: month, day: day)) else { return nil }
                return asEnd ? calendar.date(byAdding: .day, value: 1, to: midnight) : midnight
            }
        }
    }

    static func parse(_ text: String) -> Parsed? {
        var reader = Reader(Array(text.utf8))
        guard let year = reader.digits(4), reader.take("-"), let month = reader.digits(2), reader.take("-"),
            let day = reader.digits(2), (1900...9999).contains(year), (1...12).contains(month),
            (1...daysIn(month: month, year: year)).contains(day)
        else { return nil }
        if reader.atEnd { return .day(year: year, month: month, day: day) }
        guard reader.take("T") || reader.take("t") || reader.take(" "),
            let hour = reader.digits(2), hour < 24, reader.take(":"), let minute = reader.digits(2), minute < 60
        else { return nil }
        var second = 0
        var nanosecond = 0
        if reader.take(":") {
            guard let s = reader.digits(2), s < 60 else { return nil }
            second = s
            if reader.take(".") || reader.take(",") {
                var digits = 0
                var scale = 100_000_000
                while let digit = reader.digit() {
                    digits += 1
                    guard digits <= 9 else { return nil }
                    nanosecond += digit * scale
                    scale /= 10
                }
                guard digits > 0 else { return nil }
            }
        }
        var components = DateComponents(year: year, month: month, day: day, hour: hour, minute: minute, second: second)
        if reader.atEnd {
            components.nanosecond = nanosecond
            return .local(components)
        }
        var offsetSeconds = 0
        if reader.take("Z") || reader.take("z") {
            offsetSeconds = 0
        } else {
            guard let sign = reader.sign(), let hours = reader.digits(2), hours <= 18 else { return nil }
            var minutes = 0
            if reader.take(":") {
                guard let m = reader.digits(2) else { return nil }
                minutes = m
            } else if !reader.atEnd {
                guard let m = reader.digits(2) else { return nil }
                minutes = m
            }
            guard minutes < 60 else { return nil }
            offsetSeconds = sign * (hours * 3600 + minutes * 60)
        }
        guard reader.atEnd else { return nil }
        let days = RollupPlan.days(fromCivil: Int64(year), Int64(month), Int64(day))
        let seconds = days * 86_400 + Int64(hour * 3600 + minute * 60 + second - offsetSeconds)
        // Whole microseconds: what the database keeps.
        let micros = seconds * 1_000_000 + Int64(nanosecond / 1000)
        return .instant(Date(timeIntervalSince1970: Double(micros) / 1_000_000))
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    private struct Reader {
        let bytes: [UInt8]
        var index = 0
        init(_ bytes: [UInt8]) { self.bytes = bytes }
        var atEnd: Bool { index == bytes.count }

        mutating func take(_ character: Unicode.Scalar) -> Bool {
            guard index < bytes.count, bytes[index] == UInt8(character.value) else { return false }
            index += 1
            return true
        }

        mutating func digit() -> Int? {
            guard index < bytes.count, (0x30...0x39).contains(bytes[index]) else { return nil }
            defer { index += 1 }
            return Int(bytes[index] - 0x30)
        }

        mutating func digits(_ count: Int) -> Int? {
            var value = 0
            for _ in 0..<count {
                guard let digit = digit() else { return nil }
                value = value * 10 + digit
            }
            return value
        }

        mutating func sign() -> Int? {
            if take("+") { return 1 }
            if take("-") { return -1 }
            return nil
        }
    }
}
