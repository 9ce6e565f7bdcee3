import Foundation

public enum SegmentMode: String, Sendable, CaseIterable {
    /// The request carries every listed segment.
    case all = "ALL"
    /// The request carries at least one of them.
    case any = "ANY"
}

/// Trend buckets, cut at midnights (weeks on Mondays, months on the 1st) of the report's
/// time zone.
public enum ReportInterval: String, Sendable, CaseIterable {
    case day, week, month
}

/// What a breakdown has one entry per.
public enum ReportGrouping: String, Sendable, CaseIterable {
    case survey, interactionType, segment, language
}

/// Which requests a report counts.
public struct ReportFilter: Sendable, Equatable {
    /// `nil`: all the company's surveys.
    public var survey: SurveyID?
    /// `nil`: every channel.
    public var channel: Channel?
    /// As listed (duplicates removed); empty: no segment filter.
    public var segments: [String]
    public var segmentMode: SegmentMode

    public init(survey: SurveyID? = nil, channel: Channel? = nil, segments: [String] = [], segmentMode: SegmentMode = .all) {
        self.survey = survey
        self.channel = channel
        self.segments = segments
        self.segmentMode = segmentMode
    }

    /// Whether a request with these attributes is counted.
    public func matches(survey: SurveyID, channel: Channel, segments: [String]) -> Bool {
        if let wanted = self.survey, wanted != survey { return false }
        if let wanted = self.channel, wanted != channel { return false }
        guard !self.segments.isEmpty else { return true }
        switch segmentMode {
        case .all: return self.segments.allSatisfy(segments.contains)
        case .any: return self.segments.contains(where: segments.contains)
        }
    }
}

/// A report as asked for: the period, its time zone, the filter, and optionally trend
/// buckets or a breakdown.
public struct ReportQuery: Sendable, Equatable {
    /// Requests created in `[start, end)` are counted.
    public var period: Range<Date>
    /// Plain dates, dates without offset and trend buckets are read in this zone.
    public var timeZone: TimeZone
    /// The zone's name as asked for (Foundation calls UTC "GMT").
    public var timeZoneName: String
    public var filter: ReportFilter
    public var interval: ReportInterval?
    public var grouping: ReportGrouping?

    public init(
        period: Range<Date>, timeZone: TimeZone, timeZoneName: String? = nil, filter: ReportFilter,
        interval: ReportInterval? = nil, grouping: ReportGrouping? = nil
    ) {
        self.period = period
        self.timeZone = timeZone
        self.timeZoneName = timeZoneName ?? timeZone.identifier
        self.filter = filter
        self.interval = interval
        self.grouping = grouping
    }

    /// The trend's buckets: the period cut at the interval's boundaries in the report's
    /// zone, the first and last clipped to the period, empty ones included. Just the
    /// period when there is no interval.
    public func buckets() throws(ReportParameterError) -> [Range<Date>] {
        guard let interval else { return [period] }
        let calendar = ReportCalendar.calendar(in: timeZone)
        let unit: Calendar.Component = switch interval {
        case .day: .day
        case .week: .weekOfYear
        case .month: .month
        }
        var buckets: [Range<Date>] = []
        var start = period.lowerBound
        while start < period.upperBound || buckets.isEmpty {
            guard buckets.count < ReportLimits.maximumBuckets else {
                throw ReportParameterError(
                    "interval", "makes more than \(ReportLimits.maximumBuckets) buckets over this period; choose a longer interval or a shorter period",
                    isRule: true)
            }
            guard let next = calendar.dateInterval(of: unit, for: start)?.end else { break }
            let end = min(next, period.upperBound)
            buckets.append(start..<max(start, end))
            if next >= period.upperBound { break }
            start = next
        }
        return buckets
    }
}

public enum ReportLimits {
    public static let maximumSegments = 20
    public static let maximumYears = 5
    public static let maximumBuckets = 400
    /// Entries of a breakdown; more is refused rather than cut.
    public static let maximumGroups = 1000
    public static let defaultDays = 30
    /// Reports cover `[1970-01-01, 9000-01-01)` UTC.
    public static let earliest = Date(timeIntervalSince1970: 0)
    public static let latest = Date(timeIntervalSince1970: 221_845_392_000)
}

/// Bad report parameters: each names the query parameter and says what was wrong.
public struct ReportParameterError: Error, Sendable, Equatable {
    public struct Problem: Sendable, Equatable {
        public var parameter: String
        public var message: String
        /// Each parameter is well-formed, but together they ask for what is not allowed
        /// (a period that ends before it starts, too many buckets): the API answers 422,
        /// where a malformed parameter gets 400.
        public var isRule: Bool

        public init(parameter: String, message: String, isRule: Bool = false) {
            self.parameter = parameter
            self.message = message
            self.isRule = isRule
        }
    }

    public var problems: [Problem]

    public init(_ parameter: String, _ message: String, isRule: Bool = false) {
        problems = [Problem(parameter: parameter, message: message, isRule: isRule)]
    }

    /// Whether every problem is a broken rule rather than a malformed parameter.
    public var isOnlyRules: Bool { problems.allSatisfy(\.isRule) }

    init(problems: [Problem]) {
        self.problems = problems
    }
}

public enum ReportCalendar {
    /// Gregorian, weeks from Monday (ISO 8601).
    public static func calendar(in timeZone: TimeZone) -> Calendar {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        calendar.firstWeekday = 2
        calendar.minimumDaysInFirstWeek = 4
        return calendar
    }
}
