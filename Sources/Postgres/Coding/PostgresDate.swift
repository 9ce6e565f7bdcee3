import Foundation

/// `timestamptz` values. Every connection sets `TimeZone=UTC` and `DateStyle=ISO`, so the
/// server writes `2026-11-29 11:22:11.123456+00`; we read exactly that shape and send
/// ISO 8601 with an explicit offset, which the server reads unambiguously.
extension Date: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? {
        // Whole microseconds, the precision of timestamptz.
        let micros = (timeIntervalSince1970 * 1_000_000).rounded()
        var seconds = Int64((micros / 1_000_000).rounded(.down))
        var fraction = Int64(micros) - seconds * 1_000_000
        if fraction < 0 {
            fraction += 1_000_000
            seconds -= 1
        }
        let (days, secondOfDay) = seconds.quotientAndRemainder(dividingBy: 86_400)
        let dayIndex = secondOfDay < 0 ? days - 1 : days
        let second = secondOfDay < 0 ? secondOfDay + 86_400 : secondOfDay
        let (year, month, day) = CivilCalendar.civil(fromDays: dayIndex)
        return String(
            format: "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%06lld+00:00",
            year, month, day, second / 3600, second / 60 % 60, second % 60, fraction)
    }

    public init(postgresText text: String) throws(PostgresError) {
        guard let date = CivilCalendar.parseTimestamp(text) else { throw .decoding(text, as: Date.self) }
        self = date
    }
}

/// Proleptic Gregorian conversions (Howard Hinnant's `days_from_civil` and its inverse),
/// exact over the whole range PostgreSQL uses, without Foundation's calendar machinery.
enum CivilCalendar {
    static func days(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func civil(fromDays z: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = z + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// Parses `YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM[:SS]]]` as written by the server.
    static func parseTimestamp(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        var index = 0
        func number(_ width: Int) -> Int64? {
            guard index + width <= bytes.count else { return nil }
            var value: Int64 = 0
            for byte in bytes[index..<(index + width)] {
                guard byte >= 48, byte <= 57 else { return nil }
                value = value * 10 + Int64(byte - 48)
            }
            index += width
            return value
        }
        func expect(_ character: UInt8) -> Bool {
            guard index < bytes.count, bytes[index] == character else { return false }
            index += 1
            return true
        }
        guard let year = number(4), expect(UInt8(ascii: "-")), let month = number(2),
            expect(UInt8(ascii: "-")), let day = number(2)
        else { return nil }
        guard expect(UInt8(ascii: " ")) || expect(UInt8(ascii: "T")) else { return nil }
        guard let hour = number(2), expect(UInt8(ascii: ":")), let minute = number(2),
            expect(UInt8(ascii: ":")), let second = number(2)
        else { return nil }
        var micros: Int64 = 0
        if expect(UInt8(ascii: ".")) {
            var digits = 0
            while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 {
                if digits < 6 { micros = micros * 10 + Int64(bytes[index] - 48) }
                digits += 1
                index += 1
            }
            if digits < 6 { for _ in digits..<6 { micros *= 10 } }
        }
        var offset: Int64 = 0
        if index < bytes.count {
            let sign: Int64
            if expect(UInt8(ascii: "+")) { sign = 1 } else if expect(UInt8(ascii: "-")) { sign = -1 } else { return nil }
            guard let hours = number(2) else { return nil }
            var minutes: Int64 = 0
            var seconds: Int64 = 0
            if expect(UInt8(ascii: ":")) {
                guard let m = number(2) else { return nil }
                minutes = m
                if expect(UInt8(ascii: ":")) {
                    guard let s = number(2) else { return nil }
                    seconds = s
                }
            }
            offset = sign * (hours * 3600 + minutes * 60 + seconds)
        }
        guard index == bytes.count else { return nil }
        let epochSeconds = days(year: year, month: month, day: day) * 86_400 + hour * 3600 + minute * 60 + second - offset
        return Date(timeIntervalSince1970: Double(epochSeconds) + Double(micros) / 1_000_000)
    }
}

extension Date: PostgresOptionalDecodableOrValue {}
