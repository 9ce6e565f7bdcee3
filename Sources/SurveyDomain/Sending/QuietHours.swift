import Foundation

/// A wall-clock time of day, to the minute: `21:00`.
public struct TimeOfDay: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let hour: Int
    public let minute: Int

    public init?(hour: Int, minute: Int) {
        guard (0...23).contains(hour), (0...59).contains(minute) else { return nil }
        self.hour = hour
        self.minute = minute
    }

    /// `HH:MM`, 24-hour, both digits of each.
    public init?(parsing text: String) {
        let utf8 = Array(text.utf8)
        guard utf8.count == 5, utf8[2] == UInt8(ascii: ":"),
            let hour = Int(String(decoding: utf8[0..<2], as: UTF8.self)),
            let minute = Int(String(decoding: utf8[3..<5], as: UTF8.self)),
            utf8[0..<2].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), utf8[3..<5].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 })
        else { return nil }
        self.init(hour: hour, minute: minute)
    }

    var secondOfDay: Int { hour * 3600 + minute * 60 }

    public var description: String {
        let digits = { (value: Int) in value < 10 ? "0\(value)" : "\(value)" }
        return digits(hour) + ":" + digits(minute)
    }

    public static func < (lhs: TimeOfDay, rhs: TimeOfDay) -> Bool { lhs.secondOfDay < rhs.secondOfDay }
}

/// The hours of the day, in the company's time zone, when no survey may go out: a job
/// that falls due inside them waits for their end. `start` is included, `end` is not; a
/// window whose start is after its end runs over midnight (the default, 21:00 to 09:00).
public struct QuietHours: Sendable, Equatable {
    public var start: TimeOfDay
    public var end: TimeOfDay

    public static let `default` = QuietHours(start: TimeOfDay(hour: 21, minute: 0)!, end: TimeOfDay(hour: 9, minute: 0)!)!

    /// `nil` when `start == end`: an empty window is not a window.
    public init?(start: TimeOfDay, end: TimeOfDay) {
        guard start != end else { return nil }
        self.start = start
        self.end = end
    }

    /// The first instant at or after `date` outside the window, in `zone`: `date` itself
    /// unless it falls inside, else the window's end. Over a daylight-saving change the
    /// end is the first wall time at or after it that exists.
    public func nextAllowed(after date: Date, in zone: TimeZone) -> Date {
        let calendar = ReportCalendar.calendar(in: zone)
        let parts = calendar.dateComponents([.hour, .minute, .second, .nanosecond], from: date)
        let second = Double((parts.hour ?? 0) * 3600 + (parts.minute ?? 0) * 60 + (parts.second ?? 0))
            + Double(parts.nanosecond ?? 0) / 1e9
        let (from, to) = (Double(start.secondOfDay), Double(end.secondOfDay))
        let inside = from < to ? (second >= from && second < to) : (second >= from || second < to)
        guard inside else { return date }
        // The end on the same calendar day, or the next day's if that one is already past.
        let day = calendar.startOfDay(for: date)
        for offset in 0...1 {
            guard let candidateDay = calendar.date(byAdding: .day, value: offset, to: day),
                let candidate = calendar.date(
                    bySettingHour: end.hour, minute: end.minute, second: 0, of: candidateDay, matchingPolicy: .nextTime,
                    repeatedTimePolicy: .first, direction: .forward),
                candidate > date
            else { continue }
            return candidate
        }
        return date
    }
}

/// When a survey goes out: no earlier than asked, never inside quiet hours.
public struct SendSchedule: Sendable, Equatable {
    /// `nil`: quiet hours are off.
    public var quietHours: QuietHours?
    public var timeZone: TimeZone

    /// `sendAt` may lie at most this far ahead.
    public static let maximumLead: TimeInterval = 30 * 86_400

    public init(quietHours: QuietHours?, timeZone: TimeZone) {
        self.quietHours = quietHours
        self.timeZone = timeZone
    }

    /// The due time of a request asked for `sendAt` (now if `nil` or past).
    public func dueTime(sendAt: Date?, now: Date) -> Date {
        let wanted = max(sendAt ?? now, now)
        return quietHours?.nextAllowed(after: wanted, in: timeZone) ?? wanted
    }
}
