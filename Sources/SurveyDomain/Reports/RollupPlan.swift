import Foundation

/// How a report's buckets are read: mostly from the UTC month and day rollups, the rest
/// from the requests themselves, each part added or subtracted.
///
/// Counts are sums, so a bucket `[s, e)` may be covered by any cells whose signed sum is
/// its indicator: e.g. March 3–31 is the month of March minus March 1–2. Each boundary is
/// moved to the nearest UTC midnight (the difference, at most 12 hours, is read from the
/// requests with the matching sign) and then to the nearest UTC month start (the
/// difference, at most about 15 days, read from the day rollups). So a bucket costs at
/// most one day of raw rows and a month of day cells, plus one cell per month, however
/// long the period and however long the company's history.
public enum RollupPlan {
    public struct Piece: Sendable, Hashable {
        public enum Source: String, Sendable {
            /// Requests created in `[start, end)`.
            case requests
            /// Day rollups of the UTC days in `[start, end)`.
            case days
            /// Month rollups of the UTC months in `[start, end)`.
            case months
        }

        public var source: Source
        public var start: Date
        public var end: Date
        /// The index of the bucket it counts towards.
        public var bucket: Int
        /// +1 or −1.
        public var sign: Int

        public init(source: Source, start: Date, end: Date, bucket: Int, sign: Int) {
            self.source = source
            self.start = start
            self.end = end
            self.bucket = bucket
            self.sign = sign
        }
    }

    static let secondsPerDay: Double = 86_400

    public static func pieces(for buckets: [Range<Date>]) -> [Piece] {
        var pieces: [Piece] = []
        for (index, bucket) in buckets.enumerated() where !bucket.isEmpty {
            pieces += self.pieces(for: bucket, index: index)
        }
        return pieces
    }

    private static func pieces(for bucket: Range<Date>, index: Int) -> [Piece] {
        var pieces: [Piece] = []
        func add(_ source: Piece.Source, _ start: Date, _ end: Date, _ sign: Int) {
            if start < end { pieces.append(Piece(source: source, start: start, end: end, bucket: index, sign: sign)) }
        }
        /// `[from, to)` counted with `sign` when from < to, or `[to, from)` with −sign.
        func correct(_ source: Piece.Source, from: Date, to: Date, sign: Int) {
            if from < to { add(source, from, to, sign) } else { add(source, to, from, -sign) }
        }

        let firstDay = nearestDay(bucket.lowerBound)
        let endDay = nearestDay(bucket.upperBound)
        guard firstDay < endDay else {
            add(.requests, bucket.lowerBound, bucket.upperBound, 1)
            return pieces
        }
        // Requests between each boundary and its midnight: added outside, subtracted inside.
        correct(.requests, from: bucket.lowerBound, to: date(day: firstDay), sign: 1)
        correct(.requests, from: date(day: endDay), to: bucket.upperBound, sign: 1)

        let firstMonth = nearestMonthStart(firstDay)
        let endMonth = nearestMonthStart(endDay)
        guard firstMonth < endMonth else {
            add(.days, date(day: firstDay), date(day: endDay), 1)
            return pieces
        }
        add(.months, date(day: firstMonth), date(day: endMonth), 1)
        correct(.days, from: date(day: firstDay), to: date(day: firstMonth), sign: 1)
        correct(.days, from: date(day: endMonth), to: date(day: endDay), sign: 1)
        return pieces
    }

    /// The number of the UTC midnight nearest to `date` (days since 1970-01-01); halves
    /// round up.
    static func nearestDay(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 / secondsPerDay + 0.5).rounded(.down))
    }

    static func date(day: Int64) -> Date { Date(timeIntervalSince1970: Double(day) * secondsPerDay) }

    /// The first day of the month that starts nearest to `day`; halves round down.
    static func nearestMonthStart(_ day: Int64) -> Int64 {
        let (year, month, _) = Timestamp.civil(fromDays: day)
        let start = days(fromCivil: year, month, 1)
        let next = month == 12 ? days(fromCivil: year + 1, 1, 1) : days(fromCivil: year, month + 1, 1)
        return day - start <= next - day ? start : next
    }

    /// Howard Hinnant's `days_from_civil`.
    static func days(fromCivil year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
