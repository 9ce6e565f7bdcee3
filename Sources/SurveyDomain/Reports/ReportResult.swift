import Foundation

/// What one entry of a breakdown stands for.
public enum ReportGroupKey: Sendable, Hashable {
    case survey(SurveyID, name: String, interactionType: String)
    case interactionType(String)
    /// `nil`: requests sent without segments. A request with two segments counts in both.
    case segment(String?)
    /// `nil`: requests sent without a language.
    case language(String?)
}

/// A report's numbers: one entry per bucket (one bucket without a trend), and the
/// breakdown when one was asked for.
public struct ReportResult: Sendable, Equatable {
    public var buckets: [ReportCounts]
    public var groups: [(key: ReportGroupKey, counts: ReportCounts)]
    /// As of when the data read is (a hot standby replays the primary's commits a moment
    /// later); `nil` when not known.
    public var dataAsOf: Date?

    public init(buckets: [ReportCounts], groups: [(key: ReportGroupKey, counts: ReportCounts)] = []) {
        self.buckets = buckets
        self.groups = groups
    }

    public var total: ReportCounts { buckets.reduce(.zero, +) }

    public static func == (lhs: ReportResult, rhs: ReportResult) -> Bool {
        lhs.buckets == rhs.buckets && lhs.groups.map(\.key) == rhs.groups.map(\.key)
            && lhs.groups.map(\.counts) == rhs.groups.map(\.counts)
    }
}
