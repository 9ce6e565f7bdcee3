/// The seven counters a report adds up over the requests of a period. Every one is a sum
/// over requests, so counts of parts add up to the count of the whole, and the storage
/// layer may add and subtract partial sums exactly.
public struct ReportCounts: Sendable, Hashable {
    /// Requests created in the period.
    public var requests: Int64
    /// Requests whose SMS failed, including those whose outcome is unknown (`uncertain`).
    public var failed: Int64
    /// Requests answered with a score.
    public var good: Int64
    /// Requests answered, but never with a readable score.
    public var bad: Int64
    /// Good responses scoring 9–10, 7–8 and 0–6.
    public var promoters: Int64
    public var passives: Int64
    public var detractors: Int64

    public init(
        requests: Int64 = 0, failed: Int64 = 0, good: Int64 = 0, bad: Int64 = 0,
        promoters: Int64 = 0, passives: Int64 = 0, detractors: Int64 = 0
    ) {
        self.requests = requests
        self.failed = failed
        self.good = good
        self.bad = bad
        self.promoters = promoters
        self.passives = passives
        self.detractors = detractors
    }

    public static let zero = ReportCounts()

    /// Good and bad responses: each request counts once, however many replies it got.
    public var responses: Int64 { good + bad }

    /// The Net Promoter Score, 100 × (promoters − detractors) / good responses, to one
    /// decimal (halves away from zero), in integer arithmetic so no binary fraction can
    /// move a digit. `nil` when there is no good response.
    public var score: Tenths? {
        guard good > 0 else { return nil }
        return Tenths(rounding: 1000 * (promoters - detractors), dividedBy: good)
    }

    /// The half-width of the score's 95 % confidence interval:
    /// 1.96 × 100 × √((p + d − (p − d)²) / n), with p and d the promoter and detractor
    /// shares of the n good responses. `nil` when there is no good response.
    public var marginOfError: Tenths? {
        guard good > 0 else { return nil }
        let n = Double(good)
        let p = Double(promoters) / n
        let d = Double(detractors) / n
        let variance = max(0, p + d - (p - d) * (p - d))
        return Tenths(rounding: 1.96 * 100 * (variance / n).squareRoot())
    }

    /// Responses per request, in percent to one decimal; `nil` without requests.
    public var responseRate: Tenths? {
        guard requests > 0 else { return nil }
        return Tenths(rounding: 1000 * responses, dividedBy: requests)
    }

    public static func + (lhs: ReportCounts, rhs: ReportCounts) -> ReportCounts {
        ReportCounts(
            requests: lhs.requests + rhs.requests, failed: lhs.failed + rhs.failed, good: lhs.good + rhs.good,
            bad: lhs.bad + rhs.bad, promoters: lhs.promoters + rhs.promoters, passives: lhs.passives + rhs.passives,
            detractors: lhs.detractors + rhs.detractors)
    }

    public static func += (lhs: inout ReportCounts, rhs: ReportCounts) { lhs = lhs + rhs }
}

/// A number with exactly one decimal, held as an integer count of tenths.
public struct Tenths: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var tenths: Int64

    public init(tenths: Int64) { self.tenths = tenths }

    /// `numerator / denominator` tenths, rounded half away from zero.
    public init(rounding numerator: Int64, dividedBy denominator: Int64) {
        precondition(denominator > 0)
        let magnitude = (2 * numerator.magnitude + denominator.magnitude) / (2 * denominator.magnitude)
        tenths = numerator < 0 ? -Int64(magnitude) : Int64(magnitude)
    }

    /// `value` to the nearest tenth, halves away from zero.
    public init(rounding value: Double) {
        tenths = Int64((value * 10).rounded(.toNearestOrAwayFromZero))
    }

    public var doubleValue: Double { Double(tenths) / 10 }

    /// `100` for whole numbers (as the API reference prints scores), else `33.3`.
    public var description: String {
        let sign = tenths < 0 ? "-" : ""
        let whole = tenths.magnitude / 10
        let fraction = tenths.magnitude % 10
        return fraction == 0 ? "\(sign)\(whole)" : "\(sign)\(whole).\(fraction)"
    }

    public static func < (lhs: Tenths, rhs: Tenths) -> Bool { lhs.tenths < rhs.tenths }
}
