import Foundation
import SurveyDomain
import Testing

@Suite struct QuietHoursTests {
    let brussels = TimeZone(identifier: "Europe/Brussels")!

    func instant(_ text: String) -> Date {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)!
    }

    @Test func outsideTheWindowNothingWaits() {
        let noon = instant("2026-12-07T12:00:00+01:00")
        #expect(QuietHours.default.nextAllowed(after: noon, in: brussels) == noon)
        // The end is excluded, the start included.
        let nine = instant("2026-12-07T09:00:00+01:00")
        #expect(QuietHours.default.nextAllowed(after: nine, in: brussels) == nine)
        let nineBefore = instant("2026-12-07T20:59:59+01:00")
        #expect(QuietHours.default.nextAllowed(after: nineBefore, in: brussels) == nineBefore)
    }

    @Test func insideTheWindowWaitsForItsEnd() {
        // Late evening: the next morning. Early morning: the same morning.
        #expect(QuietHours.default.nextAllowed(after: instant("2026-12-07T21:00:00+01:00"), in: brussels) == instant("2026-12-08T09:00:00+01:00"))
        #expect(QuietHours.default.nextAllowed(after: instant("2026-12-07T23:30:00+01:00"), in: brussels) == instant("2026-12-08T09:00:00+01:00"))
        #expect(QuietHours.default.nextAllowed(after: instant("2026-12-08T03:00:00+01:00"), in: brussels) == instant("2026-12-08T09:00:00+01:00"))
        // In UTC terms 20:30Z is 21:30 in Brussels: quiet.
        #expect(QuietHours.default.nextAllowed(after: instant("2026-12-07T20:30:00Z"), in: brussels) == instant("2026-12-08T08:00:00Z"))
    }

    @Test func aWindowWithinOneDay() {
        let lunch = QuietHours(start: TimeOfDay(hour: 12, minute: 0)!, end: TimeOfDay(hour: 13, minute: 30)!)!
        let utc = TimeZone(identifier: "UTC")!
        #expect(lunch.nextAllowed(after: instant("2026-12-07T12:10:00Z"), in: utc) == instant("2026-12-07T13:30:00Z"))
        #expect(lunch.nextAllowed(after: instant("2026-12-07T23:10:00Z"), in: utc) == instant("2026-12-07T23:10:00Z"))
    }

    @Test func daylightSavingChanges() {
        // 2027-03-28, Brussels skips 02:00–03:00: a window ending 02:30 ends at 03:00 that day.
        let night = QuietHours(start: TimeOfDay(hour: 23, minute: 0)!, end: TimeOfDay(hour: 2, minute: 30)!)!
        #expect(night.nextAllowed(after: instant("2027-03-28T01:00:00+01:00"), in: brussels) == instant("2027-03-28T03:00:00+02:00"))
        // The default window the night the clocks go back still ends at 09:00 local.
        #expect(QuietHours.default.nextAllowed(after: instant("2027-10-31T02:30:00+01:00"), in: brussels) == instant("2027-10-31T09:00:00+01:00"))
    }

    @Test func timesOfDayParseStrictly() {
        #expect(TimeOfDay(parsing: "21:00") == TimeOfDay(hour: 21, minute: 0))
        #expect(TimeOfDay(parsing: "09:05")?.description == "09:05")
        for bad in ["9:00", "24:00", "12:60", "12-00", "+1:00", "12:0a", " 12:00", ""] {
            #expect(TimeOfDay(parsing: bad) == nil, "\(bad)")
        }
        #expect(QuietHours(start: TimeOfDay(hour: 9, minute: 0)!, end: TimeOfDay(hour: 9, minute: 0)!) == nil)
    }

    @Test func dueTimeIsNeverEarlierThanAskedNorInsideQuietHours() {
        let schedule = SendSchedule(quietHours: .default, timeZone: brussels)
        let now = instant("2026-12-07T10:00:00+01:00")
        #expect(schedule.dueTime(sendAt: nil, now: now) == now)
        #expect(schedule.dueTime(sendAt: instant("2026-12-01T10:00:00+01:00"), now: now) == now, "the past means now")
        #expect(schedule.dueTime(sendAt: instant("2026-12-09T22:00:00+01:00"), now: now) == instant("2026-12-10T09:00:00+01:00"))
        let off = SendSchedule(quietHours: nil, timeZone: brussels)
        #expect(off.dueTime(sendAt: instant("2026-12-09T22:00:00+01:00"), now: now) == instant("2026-12-09T22:00:00+01:00"))
    }
}
