import Foundation

/// What a dashboard page shows, as its URL says (so a view can be bookmarked and shared):
/// the period, the channel, the segments and how they combine, and the trend's interval.
/// Turned into the very `ReportParameters` the API reads, so a page and the API given the
/// same parameters count the same numbers.
public struct DashboardFilters: Sendable, Equatable {
    public enum Period: Sendable, Equatable {
        /// The last `n` whole days in the company's time zone, today included.
        case lastDays(Int)
        /// From one day to another, both included (`YYYY-MM-DD`, in the company's time zone).
        case range(from: String, to: String)
    }

    /// The lengths offered besides a custom range.
    public static let presetDays = [30, 90, 365]

    public var period: Period = .lastDays(30)
    public var channel: Channel?
    public var segments: [String] = []
    public var segmentMode: SegmentMode = .all
    /// `week` or `month`; by default weeks up to 90 days, months beyond.
    public var interval: ReportInterval?

    public init() {}

    /// A parameter the page could not use, with why, to show next to its control.
    public struct Problem: Sendable, Equatable {
        public var parameter: String
        public var message: String

        public init(parameter: String, message: String) {
            self.parameter = parameter
            self.message = message
        }
    }

    /// Reads the page's query parameters. Unknown parameters are ignored (a page is not an
    /// API: a stale bookmark should still open); a known one with a bad value is reported
    /// and left at its default.
    public init(parameters: [(String, String)]) throws(DashboardFiltersError) {
        var problems: [Problem] = []
        func value(_ name: String) -> String? {
            parameters.last { $0.0 == name }.map(\.1).map { $0.trimmingCharacters(in: .whitespaces) }.flatMap { $0.isEmpty ? nil : $0 }
        }
        switch value("period") {
        case nil: break
        case "custom":
            let from = value("from"), to = value("to")
            if let from, let to, Self.isDate(from), Self.isDate(to) {
                if from > to {
                    problems.append(Problem(parameter: "from", message: "The start must not be after the end."))
                } else {
                    period = .range(from: from, to: to)
                }
            } else {
                if !(from.map(Self.isDate) ?? false) {
                    problems.append(Problem(parameter: "from", message: "Give the first day as YYYY-MM-DD."))
                }
                if !(to.map(Self.isDate) ?? false) {
                    problems.append(Problem(parameter: "to", message: "Give the last day as YYYY-MM-DD."))
                }
            }
        case let text?:
            if let days = Int(text), Self.presetDays.contains(days) {
                period = .lastDays(days)
            } else {
                problems.append(Problem(parameter: "period", message: "Choose 30, 90 or 365 days, or a custom range."))
            }
        }
        if let text = value("channel") {
            if let channel = Channel(rawValue: text) { self.channel = channel } else {
                problems.append(Problem(parameter: "channel", message: "Unknown channel \(text.prefix(20))."))
            }
        }
        for (name, text) in parameters where name == "segments" {
            for segment in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !segment.isEmpty {
                if !segments.contains(segment) { segments.append(segment) }
            }
        }
        if let text = value("segmentMode") {
            if let mode = SegmentMode(rawValue: text) { segmentMode = mode } else {
                problems.append(Problem(parameter: "segmentMode", message: "Choose ALL or ANY."))
            }
        }
        if let text = value("interval") {
            if let interval = ReportInterval(rawValue: text), interval != .day { self.interval = interval } else {
                problems.append(Problem(parameter: "interval", message: "Choose week or month."))
            }
        }
        guard problems.isEmpty else { throw DashboardFiltersError(problems: problems, usable: self) }
    }

    /// The trend's interval: the one chosen, else weeks up to 90 days and months beyond.
    public func trendInterval(today: String) -> ReportInterval {
        if let interval { return interval }
        switch period {
        case .lastDays(let days): return days > 90 ? .month : .week
        case .range(let from, let to):
            guard let start = Self.day(from), let end = Self.day(to) else { return .week }
            return end.timeIntervalSince(start) > 91 * 86_400 ? .month : .week
        }
    }

    /// The first and last day of the period (inclusive) as `YYYY-MM-DD`, given today's date
    /// in the company's time zone.
    public func days(today: String) -> (from: String, to: String) {
        switch period {
        case .range(let from, let to): return (from, to)
        case .lastDays(let count):
            guard let end = Self.day(today) else { return (today, today) }
            return (Self.format(end.addingTimeInterval(-Double(count - 1) * 86_400)), today)
        }
    }

    /// The API's report parameters for this view: whole days in `timeZone`.
    public func reportParameters(timeZone: String, today: String, trend: Bool = false) -> ReportParameters {
        let (from, to) = days(today: today)
        return ReportParameters(
            startDate: from, endDate: to, timezone: timeZone, channel: channel?.rawValue, segments: segments,
            segmentMode: segmentMode.rawValue, interval: trend ? trendInterval(today: today).rawValue : nil)
    }

    /// The query string that shows this view, in a stable order.
    public var queryItems: [(String, String)] {
        var items: [(String, String)] = []
        switch period {
        case .lastDays(30): break
        case .lastDays(let days): items.append(("period", String(days)))
        case .range(let from, let to): items += [("period", "custom"), ("from", from), ("to", to)]
        }
        if let channel { items.append(("channel", channel.rawValue)) }
        if !segments.isEmpty { items.append(("segments", segments.joined(separator: ","))) }
        if segmentMode != .all { items.append(("segmentMode", segmentMode.rawValue)) }
        if let interval { items.append(("interval", interval.rawValue)) }
        return items
    }

    /// Today's date in `timeZone`, as `YYYY-MM-DD`.
    public static func today(in timeZone: TimeZone, now: Date = Date()) -> String {
        let calendar = ReportCalendar.calendar(in: timeZone)
        let parts = calendar.dateComponents([.year, .month, .day], from: now)
        return String(format: "%04d-%02d-%02d", parts.year ?? 1970, parts.month ?? 1, parts.day ?? 1)
    }

    static func isDate(_ text: String) -> Bool { day(text) != nil }

    /// A `YYYY-MM-DD` date as midnight UTC (day arithmetic only; never shown as an instant).
    static func day(_ text: String) -> Date? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard text.utf8.count == 10, parts.count == 3, let year = Int(parts[0]), let month = Int(parts[1]), let day = Int(parts[2]),
            (1970...9000).contains(year)
        else { return nil }
        let calendar = ReportCalendar.calendar(in: TimeZone(identifier: "UTC")!)
        guard let date = calendar.date(from: DateComponents(year: year, month: month, day: day)),
            calendar.component(.day, from: date) == day, calendar.component(.month, from: date) == month
        else { return nil }
        return date
    }

    static func format(_ day: Date) -> String {
        let calendar = ReportCalendar.calendar(in: TimeZone(identifier: "UTC")!)
        let parts = calendar.dateComponents([.year, .month, .day], from: day)
        return String(format: "%04d-%02d-%02d", parts.year!, parts.month!, parts.day!)
    }
}

/// The parameters a page could not use, and the filters made of the rest.
public struct DashboardFiltersError: Error, Sendable, Equatable {
    public var problems: [DashboardFilters.Problem]
    public var usable: DashboardFilters
}
