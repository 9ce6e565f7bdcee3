import Foundation
import SurveyDomain
import TestSupport
import Testing

@Suite struct ReportCountsTests {
    @Test func theReferenceExample() {
        let counts = ReportCounts(requests: 1, good: 1, promoters: 1)
        #expect(counts.score == Tenths(tenths: 1000))
        #expect(counts.score?.description == "100")
        #expect(counts.marginOfError == Tenths(tenths: 0))
        #expect(counts.responseRate == Tenths(tenths: 1000))
    }

    @Test func noGoodResponseMeansNoScore() {
        let counts = ReportCounts(requests: 5, failed: 2, bad: 3)
        #expect(counts.score == nil)
        #expect(counts.marginOfError == nil)
        #expect(counts.responses == 3)
        #expect(ReportCounts.zero.responseRate == nil)
    }

    @Test(arguments: [
        // promoters, passives, detractors → score in tenths
        (1, 1, 1, 0),  // 0/3
        (2, 0, 1, 333),  // 33.33…
        (1, 0, 2, -333),
        (2, 1, 0, 667),  // 66.66…
        (1, 6, 1, 0),
        (1, 7, 0, 125),  // 12.5 exactly
        (0, 7, 1, -125),  // −12.5: halves away from zero
        (3, 3, 2, 125),
        (1, 0, 0, 1000),
        (0, 0, 1, -1000),
    ])
    func scoreRoundsHalvesAwayFromZero(_ promoters: Int64, _ passives: Int64, _ detractors: Int64, _ tenths: Int64) {
        let good = promoters + passives + detractors
        let counts = ReportCounts(requests: good, good: good, promoters: promoters, passives: passives, detractors: detractors)
        #expect(counts.score == Tenths(tenths: tenths))
    }

    @Test func marginOfErrorFollowsTheStandardError() {
        // 50 promoters, 30 passives, 20 detractors: p = .5, d = .2, NPS 30,
        // variance = .5 + .2 − .09 = .61, margin = 1.96 × 100 × √(.61 / 100) = 15.31 → 15.3.
        let counts = ReportCounts(requests: 100, good: 100, promoters: 50, passives: 30, detractors: 20)
        #expect(counts.score == Tenths(tenths: 300))
        #expect(counts.marginOfError == Tenths(tenths: 153))
    }

    @Test func tenthsPrintLikeTheReference() {
        #expect(Tenths(tenths: 1000).description == "100")
        #expect(Tenths(tenths: -5).description == "-0.5")
        #expect(Tenths(tenths: 333).description == "33.3")
        #expect(Tenths(tenths: 0).description == "0")
    }
}

@Suite struct RollupPlanTests {
    static let day: TimeInterval = 86_400

    /// Σ sign over the pieces of `bucket` that contain `instant`: day and month pieces are
    /// aligned to UTC midnights, so "contains" is the same test for every source.
    static func coverage(_ pieces: [RollupPlan.Piece], bucket: Int, at instant: Date) -> Int {
        pieces.filter { $0.bucket == bucket && $0.start <= instant && instant < $0.end }.map(\.sign).reduce(0, +)
    }

    static func isMidnight(_ date: Date) -> Bool { date.timeIntervalSince1970.truncatingRemainder(dividingBy: day) == 0 }

    static func isMonthStart(_ date: Date) -> Bool {
        isMidnight(date) && Timestamp.format(date).dropFirst(8).hasPrefix("01T")
    }

    @Test func aYearWithOddEdgesIsMostlyMonths() {
        // 2025-03-14T09:23Z → 2026-03-14T09:23Z
        let start = Date(timeIntervalSince1970: 1_741_944_180)
        let end = Date(timeIntervalSince1970: 1_773_480_180)
        let pieces = RollupPlan.pieces(for: [start..<end])
        let months = pieces.filter { $0.source == .months }
        #expect(months.count == 1)
        #expect(pieces.filter { $0.source == .requests }.allSatisfy { $0.end.timeIntervalSince($0.start) <= Self.day / 2 })
        #expect(pieces.filter { $0.source == .days }.allSatisfy { $0.end.timeIntervalSince($0.start) <= 16 * Self.day })
    }

    @Test func exactlyOneUTCDayIsOneDayCell() {
        let midnight = Date(timeIntervalSince1970: 20_000 * Self.day)
        let pieces = RollupPlan.pieces(for: [midnight..<midnight.addingTimeInterval(Self.day)])
        #expect(pieces == [.init(source: .days, start: midnight, end: midnight.addingTimeInterval(Self.day), bucket: 0, sign: 1)])
    }

    /// Property: for random buckets, at every instant (random ones, and the boundaries
    /// themselves with their neighbours), the signed pieces of each bucket add up to 1
    /// inside it and 0 outside; day and month pieces are aligned; raw pieces are short.
    @Test(arguments: 0..<40)
    func signedPiecesCoverEachBucketExactly(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let origin = 1_700_000_000.0
        var boundaries: [Double] = [origin + Double.random(in: 0...(400 * Self.day), using: &random).rounded()]
        let count = Int.random(in: 1...12, using: &random)
        for _ in 0..<count {
            let length: Double =
                switch Int.random(in: 0..<4, using: &random) {
                case 0: Double.random(in: 0...(6 * 3600), using: &random)
                case 1: Double.random(in: 0...(3 * Self.day), using: &random)
                case 2: Double.random(in: 0...(70 * Self.day), using: &random)
                default: Double.random(in: 0...(800 * Self.day), using: &random)
                }
            boundaries.append(boundaries.last! + length.rounded())
        }
        let buckets = zip(boundaries, boundaries.dropFirst()).map { Date(timeIntervalSince1970: $0)..<Date(timeIntervalSince1970: $1) }
        let pieces = RollupPlan.pieces(for: buckets)

        for piece in pieces {
            #expect(piece.start < piece.end)
            #expect(abs(piece.sign) == 1)
            switch piece.source {
            case .requests: #expect(piece.end.timeIntervalSince(piece.start) <= Self.day)
            case .days: #expect(Self.isMidnight(piece.start) && Self.isMidnight(piece.end))
            case .months: #expect(Self.isMonthStart(piece.start) && Self.isMonthStart(piece.end))
            }
        }
        var probes: [Date] = (0..<300).map { _ in
            Date(timeIntervalSince1970: Double.random(in: (boundaries.first! - 40 * Self.day)...(boundaries.last! + 40 * Self.day), using: &random))
        }
        for edge in pieces.flatMap({ [$0.start, $0.end] }) + buckets.flatMap({ [$0.lowerBound, $0.upperBound] }) {
            probes += [edge, edge.addingTimeInterval(-0.000_001), edge.addingTimeInterval(0.000_001)]
        }
        for (index, bucket) in buckets.enumerated() {
            for probe in probes {
                let expected = bucket.contains(probe) ? 1 : 0
                #expect(Self.coverage(pieces, bucket: index, at: probe) == expected, "seed \(seed), bucket \(bucket), at \(probe)")
            }
        }
    }
}

@Suite struct ReportParameterTests {
    static let now = Date(timeIntervalSince1970: 1_796_000_000)  // 2026-11-29T…Z

    func query(_ parameters: ReportParameters) throws -> ReportQuery {
        try parameters.query(survey: nil, now: Self.now)
    }

    func problems(_ parameters: ReportParameters) -> [String] {
        do {
            _ = try parameters.query(survey: nil, now: Self.now)
            return []
        } catch {
            return error.problems.map(\.parameter)
        }
    }

    @Test func defaultsToTheLast30Days() throws {
        let query = try query(ReportParameters())
        #expect(query.period.upperBound == Self.now)
        #expect(query.period.lowerBound == Self.now.addingTimeInterval(-30 * 86_400))
        #expect(query.filter.segmentMode == .all)
        #expect(query.timeZoneName == "UTC")
    }

    @Test func theReferenceExample() throws {
        let query = try query(ReportParameters(
            startDate: "2019-11-01T12:12:15.982+01:00", endDate: "2020-03-31T12:12:15.982+01:00", channel: "SMS",
            segments: ["hxsyqosx,ifywjutr"], segmentMode: "ANY"))
        #expect(Timestamp.format(query.period.lowerBound) == "2019-11-01T11:12:15.982+00:00")
        #expect(Timestamp.format(query.period.upperBound) == "2020-03-31T11:12:15.982+00:00")
        #expect(query.filter.segments == ["hxsyqosx", "ifywjutr"])
        #expect(query.filter.segmentMode == .any)
        #expect(query.filter.channel == .sms)
    }

    @Test func plainDatesAreWholeDaysInTheTimeZone() throws {
        let query = try query(ReportParameters(startDate: "2026-03-01", endDate: "2026-03-31", timezone: "Europe/Brussels"))
        #expect(Timestamp.format(query.period.lowerBound) == "2026-02-28T23:00:00.000+00:00")
        // The end date is included whole; DST starts on 2026-03-29 in Brussels.
        #expect(Timestamp.format(query.period.upperBound) == "2026-03-31T22:00:00.000+00:00")
        #expect(Timestamp.format(query.period.upperBound, in: query.timeZone) == "2026-04-01T00:00:00.000+02:00")
    }

    @Test func dateTimesWithoutOffsetAreWallTimesInTheTimeZone() throws {
        let query = try query(ReportParameters(startDate: "2026-07-01T08:30", endDate: "2026-07-02T08:30:00.5", timezone: "America/New_York"))
        #expect(Timestamp.format(query.period.lowerBound) == "2026-07-01T12:30:00.000+00:00")
        #expect(Timestamp.format(query.period.upperBound) == "2026-07-02T12:30:00.500+00:00")
    }

    @Test(arguments: ["2026-03-01T10:00:00Z", "2026-03-01T11:00:00+01:00", "2026-03-01T11:00:00+0100", "2026-03-01T11:00+01",
                      "2026-03-01T05:30:00-04:30", "2026-03-01T10:00:00.000000Z"])
    func offsetsInEveryForm(_ text: String) throws {
        let query = try query(ReportParameters(startDate: text, endDate: "2026-03-02"))
        #expect(Timestamp.format(query.period.lowerBound) == "2026-03-01T10:00:00.000+00:00")
    }

    @Test(arguments: [
        "2026-02-30", "2026-13-01", "26-03-01", "2026-3-1", "2026-03-01T25:00", "2026-03-01T10:60", "2026-03-01T10:00:00+19:00",
        "2026-03-01T10:00:00.", "2026-03-01T10:00:00.1234567891", "yesterday", "", "2026-03-01T10:00:00 +01:00", "2026-03-01Z",
        "1700000000", "2026-03-01T10:00:00+01:00:00",
    ])
    func unparsableDatesNameTheParameter(_ text: String) {
        #expect(problems(ReportParameters(startDate: text, endDate: "2026-03-02")) == ["startDate"])
        #expect(problems(ReportParameters(startDate: "2026-01-01", endDate: text)) == ["endDate"])
    }

    @Test func badPeriods() {
        #expect(problems(ReportParameters(startDate: "2026-03-02", endDate: "2026-03-01")) == ["startDate"])
        #expect(problems(ReportParameters(startDate: "2020-01-01", endDate: "2025-01-02")) == ["endDate"])
        #expect(problems(ReportParameters(startDate: "2020-01-01", endDate: "2025-01-01")) == ["endDate"])
        #expect(problems(ReportParameters(startDate: "2020-01-01", endDate: "2024-12-31")) == [])
        #expect(problems(ReportParameters(startDate: "2020-01-01", endDate: "2025-01-01T00:00:00Z")) == [])
        #expect(problems(ReportParameters(startDate: "2026-03-01", endDate: "2026-03-01")) == [])
        #expect(problems(ReportParameters(startDate: "2019-01-01")) == ["startDate"])
        // An empty period is a valid question with an all-zero answer.
        #expect(problems(ReportParameters(startDate: "2026-03-01", endDate: "2026-03-01T00:00:00Z")) == [])
    }

    @Test func badChoices() {
        #expect(problems(ReportParameters(timezone: "Mars/Olympus")) == ["timezone"])
        #expect(problems(ReportParameters(timezone: "CET+1")) == ["timezone"])
        #expect(problems(ReportParameters(timezone: "EST")) == ["timezone"])
        #expect(problems(ReportParameters(timezone: "europe/brussels")) == ["timezone"])
        #expect(problems(ReportParameters(timezone: "../../etc/passwd")) == ["timezone"])
        for zone in ["UTC", "Asia/Kolkata", "America/Argentina/Buenos_Aires", "Etc/GMT+1", "Pacific/Chatham"] {
            #expect(problems(ReportParameters(timezone: zone)) == [], "\(zone)")
        }
        #expect(problems(ReportParameters(channel: "FAX")) == ["channel"])
        #expect(problems(ReportParameters(channel: "sms")) == ["channel"])
        #expect(problems(ReportParameters(segmentMode: "SOME")) == ["segmentMode"])
        #expect(problems(ReportParameters(interval: "hour")) == ["interval"])
        #expect(problems(ReportParameters(groupBy: "country")) == ["groupBy"])
        #expect(problems(ReportParameters(segments: ["a,,b"])) == ["segments"])
        #expect(problems(ReportParameters(segments: ["a\u{0}b"])) == ["segments"])
        #expect(problems(ReportParameters(segments: ["\u{0}"])) == ["segments"])
        #expect(problems(ReportParameters(segments: [String(repeating: "x", count: 65)])) == ["segments"])
        #expect(problems(ReportParameters(segments: [(0...20).map { "s\($0)" }.joined(separator: ",")])) == ["segments"])
        #expect(problems(ReportParameters(segments: [(0..<20).map { "s\($0)" }.joined(separator: ",")])) == [])
        // Every problem at once.
        #expect(problems(ReportParameters(startDate: "x", channel: "x", segmentMode: "x")) == ["startDate", "channel", "segmentMode"])
    }

    @Test func segmentsFromRepeatedParametersAreMergedWithoutDuplicates() throws {
        let query = try query(ReportParameters(segments: ["b,a", "a", "c"]))
        #expect(query.filter.segments == ["b", "a", "c"])
    }

    @Test func bucketsFollowTheTimeZonesCalendar() throws {
        let query = try query(ReportParameters(
            startDate: "2026-03-15", endDate: "2026-05-10", timezone: "Europe/Brussels", interval: "month"))
        let buckets = try query.buckets()
        #expect(buckets.map { Timestamp.format($0.lowerBound, in: query.timeZone) } == [
            "2026-03-15T00:00:00.000+01:00", "2026-04-01T00:00:00.000+02:00", "2026-05-01T00:00:00.000+02:00",
        ])
        #expect(Timestamp.format(buckets.last!.upperBound, in: query.timeZone) == "2026-05-11T00:00:00.000+02:00")
        // A day trend across the switch to summer time: the 29th has 23 hours.
        let days = try self.query(ReportParameters(startDate: "2026-03-28", endDate: "2026-03-30", timezone: "Europe/Brussels", interval: "day")).buckets()
        #expect(days.map { $0.upperBound.timeIntervalSince($0.lowerBound) / 3600 } == [24, 23, 24])
        // Weeks start on Mondays (2026-03-02 is one).
        let weeks = try self.query(ReportParameters(startDate: "2026-03-04", endDate: "2026-03-16", interval: "week")).buckets()
        #expect(weeks.map { Timestamp.format($0.lowerBound) } == [
            "2026-03-04T00:00:00.000+00:00", "2026-03-09T00:00:00.000+00:00", "2026-03-16T00:00:00.000+00:00",
        ])
    }

    @Test func bucketCountIsCapped() {
        #expect(problems(ReportParameters(startDate: "2024-01-01", endDate: "2025-06-01", interval: "day")) == ["interval"])
        #expect(problems(ReportParameters(startDate: "2021-01-01", endDate: "2025-06-01", interval: "week")) == [])
    }

    @Test func matchesSegmentsByMode() {
        let all = ReportFilter(segments: ["a", "b"], segmentMode: .all)
        let any = ReportFilter(segments: ["a", "b"], segmentMode: .any)
        let survey = SurveyID(1)
        #expect(all.matches(survey: survey, channel: .sms, segments: ["b", "c", "a"]))
        #expect(!all.matches(survey: survey, channel: .sms, segments: ["a"]))
        #expect(any.matches(survey: survey, channel: .sms, segments: ["a"]))
        #expect(!any.matches(survey: survey, channel: .sms, segments: []))
        #expect(ReportFilter().matches(survey: survey, channel: .sms, segments: []))
    }
}
