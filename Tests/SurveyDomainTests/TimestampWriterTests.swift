import Foundation
import SurveyDomain
import Testing

@Suite struct TimestampWriterTests {
    /// What the byte-by-byte writer replaced, kept as the reference.
    static func reference(_ date: Date, offset: Int) -> String {
        let micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded()) + Int64(offset) * 1_000_000
        let milliseconds = micros >= 0 ? micros / 1000 : (micros - 999) / 1000
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let shifted = Date(timeIntervalSince1970: Double(milliseconds) / 1000)
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: shifted)
        let millisecond = ((milliseconds % 1000) + 1000) % 1000
        let minutes = abs(offset) / 60
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03lld%@%02d:%02d", parts.year!, parts.month!, parts.day!, parts.hour!,
            parts.minute!, parts.second!, millisecond, offset < 0 ? "-" : "+", minutes / 60, minutes % 60)
    }

    @Test func matchesTheCalendarEverywhere() {
        var generator = SystemRandomNumberGenerator()
        let zones = ["UTC", "Europe/Brussels", "America/St_Johns", "Asia/Kathmandu", "Pacific/Kiritimati", "America/Los_Angeles"]
            .map { TimeZone(identifier: $0)! }
        for _ in 0..<20_000 {
            // 1900 to 9999, microsecond precision, as the database stores.
            let micros = Int64.random(in: -2_208_988_800_000_000...253_402_300_799_000_000, using: &generator)
            let date = Date(timeIntervalSince1970: Double(micros) / 1_000_000)
            let zone = zones.randomElement(using: &generator)!
            let offset = zone.secondsFromGMT(for: date)
            #expect(Timestamp.format(date, in: zone) == Self.reference(date, offset: offset), "\(micros) \(zone.identifier)")
        }
        #expect(Timestamp.format(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000+00:00")
        #expect(Timestamp.format(Date(timeIntervalSince1970: -0.0005)) == "1969-12-31T23:59:59.999+00:00")
        #expect(Timestamp.format(Date(timeIntervalSince1970: 1_764_415_331.123), in: TimeZone(identifier: "America/St_Johns")!)
            == "2025-11-29T07:52:11.123-03:30")
    }
}
