import Foundation

/// The report's query parameters as received, before any of them is believed.
public struct ReportParameters: Sendable, Equatable {
    public var startDate: String?
    public var endDate: String?
    public var timezone: String?
    public var channel: String?
    /// Each value of each `segments` parameter, as sent (comma-separated lists).
    public var segments: [String]
    public var segmentMode: String?
    public var interval: String?
    public var groupBy: String?

    public init(
        startDate: String? = nil, endDate: String? = nil, timezone: String? = nil, channel: String? = nil,
        segments: [String] = [], segmentMode: String? = nil, interval: String? = nil, groupBy: String? = nil
    ) {
        self.startDate = startDate
        self.endDate = endDate
        self.timezone = timezone
        self.channel = channel
        self.segments = segments
        self.segmentMode = segmentMode
        self.interval = interval
        self.groupBy = groupBy
    }

    /// Checks every parameter and reports all that are wrong at once.
    ///
    /// - `startDate`/`endDate`: ISO 8601 with offset (an instant), without offset (a wall
    ///   time in `timezone`), or a plain date (its midnight in `timezone`; as `endDate`, the
    ///   whole day is included). Defaults: `endDate` now, `startDate` 30 days before it.
    /// - The period is half-open, `[startDate, endDate)`, and at most 5 years long.
    public func query(survey: SurveyID?, now: Date) throws(ReportParameterError) -> ReportQuery {
        var problems: [ReportParameterError.Problem] = []
        func fail(_ parameter: String, _ message: String) {
            problems.append(.init(parameter: parameter, message: message))
        }
        func breaks(_ parameter: String, _ message: String) {
            problems.append(.init(parameter: parameter, message: message, isRule: true))
        }

        var timeZone = TimeZone(identifier: "UTC")!
        var timeZoneName = "UTC"
        if let timezone {
            if let zone = ReportTimeZones.zone(named: timezone) {
                timeZone = zone
                timeZoneName = timezone
            } else {
                fail("timezone", "must be an IANA time zone name such as Europe/Brussels or UTC (got \(quoted(timezone)))")
            }
        }
        let calendar = ReportCalendar.calendar(in: timeZone)

        var start: Date?
        var end: Date?
        var endIsWholeDay = false
        if let endDate {
            if let parsed = ISODateParser.parse(endDate) {
                if case .day = parsed { endIsWholeDay = true }
                end = parsed.resolved(in: calendar, asEnd: true)
                if end == nil { breaks("endDate", "is not a time that exists in \(timeZone.identifier)") }
            } else {
                fail("endDate", "must be an ISO 8601 date or date-time, e.g. 2026-03-31 or 2026-03-31T23:59:59.999+01:00 (got \(quoted(endDate)))")
            }
        }
        if let startDate {
            if let parsed = ISODateParser.parse(startDate) {
                start = parsed.resolved(in: calendar, asEnd: false)
                if start == nil { breaks("startDate", "is not a time that exists in \(timeZone.identifier)") }
            } else {
                fail("startDate", "must be an ISO 8601 date or date-time, e.g. 2026-03-01 or 2026-03-01T00:00:00+01:00 (got \(quoted(startDate)))")
            }
        }
        if endDate == nil { end = now }
        if startDate == nil, let end { start = end.addingTimeInterval(-Double(ReportLimits.defaultDays) * 86_400) }
        if let start, let end {
            // A whole-day end includes its day: a start at the next midnight is after it.
            if start < ReportLimits.earliest || end > ReportLimits.latest {
                // Far enough for any survey, near enough that every bound prints as a four-digit year.
                breaks(
                    start < ReportLimits.earliest ? "startDate" : "endDate",
                    "must lie between \(Timestamp.format(ReportLimits.earliest)) and \(Timestamp.format(ReportLimits.latest))")
            } else if start > end || (endIsWholeDay && start >= end) {
                breaks("startDate", "must not be after endDate (\(Timestamp.format(start)) > \(Timestamp.format(end)))")
            } else if let limit = calendar.date(byAdding: .year, value: ReportLimits.maximumYears, to: start), end > limit {
                breaks(endDate == nil ? "startDate" : "endDate", "the period must not be longer than \(ReportLimits.maximumYears) years")
            }
        }

        var channel: Channel?
        if let text = self.channel {
            channel = Channel(rawValue: text)
            if channel == nil { fail("channel", "must be one of \(Channel.allCases.map(\.rawValue).joined(separator: ", ")) (got \(quoted(text)))") }
        }

        var segments: [String] = []
        var segmentsValid = true
        // The contract allows the parameter at most 20 times, empty or repeated values included.
        if self.segments.count > ReportLimits.maximumSegments {
            fail("segments", "must be given at most \(ReportLimits.maximumSegments) times (got \(self.segments.count))")
            segmentsValid = false
        }
        for list in self.segments where !list.isEmpty {
            for segment in list.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
                if segment.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
                    if segmentsValid { fail("segments", "must not contain control characters") }
                    segmentsValid = false
                } else if !SendLimits.segmentLength.contains(segment.unicodeScalars.count) {
                    if segmentsValid {
                        fail("segments", "each segment must be \(SendLimits.segmentLength.lowerBound) to \(SendLimits.segmentLength.upperBound) characters (got \(quoted(segment)))")
                    }
                    segmentsValid = false
                } else if !segments.contains(segment) {
                    segments.append(segment)
                }
            }
        }
        if segmentsValid, segments.count > ReportLimits.maximumSegments {
            fail("segments", "must list at most \(ReportLimits.maximumSegments) segments (got \(segments.count))")
        }

        var segmentMode = SegmentMode.all
        if let text = self.segmentMode {
            if let mode = SegmentMode(rawValue: text) { segmentMode = mode } else { fail("segmentMode", "must be ALL or ANY (got \(quoted(text)))") }
        }
        var interval: ReportInterval?
        if let text = self.interval {
            interval = ReportInterval(rawValue: text)
            if interval == nil { fail("interval", "must be one of day, week, month (got \(quoted(text)))") }
        }
        var grouping: ReportGrouping?
        if let text = groupBy {
            grouping = ReportGrouping(rawValue: text)
            if grouping == nil { fail("groupBy", "must be one of survey, interactionType, segment, language (got \(quoted(text)))") }
        }

        guard problems.isEmpty, let start, let end else { throw ReportParameterError(problems: problems) }
        let query = ReportQuery(
            period: start..<end, timeZone: timeZone, timeZoneName: timeZoneName,
            filter: ReportFilter(survey: survey, channel: channel, segments: segments, segmentMode: segmentMode),
            interval: interval, grouping: grouping)
        _ = try query.buckets()
        return query
    }

    private func quoted(_ text: String) -> String {
        "\"\(text.count > 64 ? String(text.prefix(64)) + "…" : text)\""
    }
}

/// The time zones a client may name (reports, lists, company settings).
public enum ReportTimeZones {
    /// IANA names only (`Area/Location`, `UTC`): Foundation also reads abbreviations and
    /// "GMT+1"-style names, whose meaning is ambiguous or surprising.
    public static func zone(named name: String) -> TimeZone? {
        guard name == "UTC" || name == "GMT" || isAreaLocation(name) else { return nil }
        return TimeZone(identifier: name)
    }

    private static func isAreaLocation(_ name: String) -> Bool {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 2, name.count <= 64, let area = parts.first, area.first?.isUppercase == true else { return false }
        return parts.allSatisfy { part in
            !part.isEmpty && part.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || "0123456789_-+".unicodeScalars.contains($0)) }
        }
    }
}
