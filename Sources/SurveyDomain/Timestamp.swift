import Foundation

/// Dates on the wire: ISO 8601 with milliseconds and an explicit offset,
/// e.g. `2026-11-29T11:22:11.123+00:00`.
public enum Timestamp {
    /// The wall time in `zone` with that zone's offset at that instant, e.g.
    /// `2026-03-01T00:00:00.000+01:00` in Europe/Brussels.
    public static func format(_ date: Date, in zone: TimeZone) -> String {
        format(date, offsetSeconds: zone.secondsFromGMT(for: date))
    }

    /// An instant written with its offset (`2026-12-24T18:00:00+01:00`, `…Z`), read as
    /// strictly as a report's dates; a date or a wall time without offset is `nil` (its
    /// meaning would depend on a zone the caller did not name).
    public static func parseInstant(_ text: String) -> Date? {
        guard case .instant(let date)? = ISODateParser.parse(text) else { return nil }
        return date
    }

    public static func format(_ date: Date) -> String {
        format(date, offsetSeconds: 0)
    }

    /// The wall time `offsetSeconds` from UTC, with that offset. Written byte by byte: an
    /// export writes millions of these, and `String(format:)` costs more than the rest of
    /// a row.
    static func format(_ date: Date, offsetSeconds offset: Int) -> String {
        // Whole microseconds first (what the database stores, exactly), then truncate to
        // milliseconds in integer arithmetic, so binary floating point cannot shift a digit.
        let micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded()) + Int64(offset) * 1_000_000
        let milliseconds = micros >= 0 ? micros / 1000 : (micros - 999) / 1000
        let seconds = milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000
        let millisecond = Int(milliseconds - seconds * 1000)
        var days = seconds / 86_400
        var secondOfDay = Int(seconds % 86_400)
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }
        let (year, month, day) = civil(fromDays: days)
        guard (0...9999).contains(year) else {
            return String(
                format: "%04lld-%02lld-%02lldT%02d:%02d:%02d.%03d%@", year, month, day, secondOfDay / 3600,
                secondOfDay / 60 % 60, secondOfDay % 60, millisecond, offsetText(offset))
        }
        return String(unsafeUninitializedCapacity: 29) { bytes in
            func put(_ value: Int, _ width: Int, at index: Int) {
                var value = value
                for position in stride(from: index + width - 1, through: index, by: -1) {
                    bytes[position] = UInt8(ascii: "0") + UInt8(value % 10)
                    value /= 10
                }
            }
            put(Int(year), 4, at: 0)
            bytes[4] = UInt8(ascii: "-")
            put(Int(month), 2, at: 5)
            bytes[7] = UInt8(ascii: "-")
            put(Int(day), 2, at: 8)
            bytes[10] = UInt8(ascii: "T")
            put(secondOfDay / 3600, 2, at: 11)
            bytes[13] = UInt8(ascii: ":")
            put(secondOfDay / 60 % 60, 2, at: 14)
            bytes[16] = UInt8(ascii: ":")
            put(secondOfDay % 60, 2, at: 17)
            bytes[19] = UInt8(ascii: ".")
            put(millisecond, 3, at: 20)
            bytes[23] = offset < 0 ? UInt8(ascii: "-") : UInt8(ascii: "+")
            let minutes = abs(offset) / 60
            put(minutes / 60 % 100, 2, at: 24)
            bytes[26] = UInt8(ascii: ":")
            put(minutes % 60, 2, at: 27)
            return 29
        }
    }

    private static func offsetText(_ offset: Int) -> String {
        let minutes = abs(offset) / 60
        return String(format: "%@%02d:%02d", offset < 0 ? "-" : "+", minutes / 60, minutes % 60)
    }

    /// Howard Hinnant's `civil_from_days`.
    static func civil(fromDays z: Int64) -> (Int64, Int64, Int64) {
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
}
