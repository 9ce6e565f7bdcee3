import Foundation
import SurveyDomain

/// A report as the API reference shows it (`date`, `from`, `to`, `segments`,
/// `segmentMode`, `nps`, `responseStatistics`, in that order), followed by what we add:
/// the survey, channel and time zone it covers, passives, the margin of error, the
/// response rate, and the trend's buckets or the breakdown's groups.
struct ReportResponse: JSONResponse {
    var query: ReportQuery
    /// The trend's buckets; `nil` for a plain report.
    var buckets: [Range<Date>]?
    var result: ReportResult
    var date: Date

    var json: JSONDocument {
        let zone = query.timeZone
        var members: [(String, JSONDocument)] = [
            ("date", .string(Timestamp.format(date, in: zone))),
            ("from", .string(Timestamp.format(query.period.lowerBound, in: zone))),
            ("to", .string(Timestamp.format(query.period.upperBound, in: zone))),
            ("segments", .array(query.filter.segments.map { .string($0) })),
            ("segmentMode", .string(query.filter.segmentMode.rawValue)),
            ("nps", Self.nps(result.total)),
            ("responseStatistics", Self.statistics(result.total)),
        ]
        if let survey = query.filter.survey { members.append(("surveyId", .integer(survey.rawValue))) }
        members.append(("channel", query.filter.channel.map { .string($0.rawValue) } ?? .null))
        members.append(("timezone", .string(query.timeZoneName)))
        if let buckets, let interval = query.interval {
            members.append(("interval", .string(interval.rawValue)))
            members.append((
                "buckets",
                .array(zip(buckets, result.buckets).map { range, counts in
                    .object([
                        ("from", .string(Timestamp.format(range.lowerBound, in: zone))),
                        ("to", .string(Timestamp.format(range.upperBound, in: zone))),
                        ("nps", Self.nps(counts)),
                        ("responseStatistics", Self.statistics(counts)),
                    ])
                })
            ))
        }
        if let grouping = query.grouping {
            members.append(("groupBy", .string(grouping.rawValue)))
            members.append(("groups", .array(result.groups.map { key, counts in
                .object([Self.member(key), ("nps", Self.nps(counts)), ("responseStatistics", Self.statistics(counts))])
            })))
        }
        return .object(members)
    }

    static func member(_ key: ReportGroupKey) -> (String, JSONDocument) {
        switch key {
        case .survey(let id, let name, let interactionType):
            ("survey", .object([("id", .integer(id.rawValue)), ("name", .string(name)), ("interactionType", .string(interactionType))]))
        case .interactionType(let type): ("interactionType", .string(type))
        case .segment(let segment): ("segment", segment.map { .string($0) } ?? .null)
        case .language(let language): ("language", language.map { .string($0) } ?? .null)
        }
    }

    static func nps(_ counts: ReportCounts) -> JSONDocument {
        .object([
            ("promoters", .integer(counts.promoters)),
            ("detractors", .integer(counts.detractors)),
            ("score", decimal(counts.score)),
            ("passives", .integer(counts.passives)),
            ("marginOfError", decimal(counts.marginOfError)),
        ])
    }

    static func statistics(_ counts: ReportCounts) -> JSONDocument {
        .object([
            ("totalRequests", .integer(counts.requests)),
            ("totalResponses", .integer(counts.responses)),
            ("goodResponses", .integer(counts.good)),
            ("badResponses", .integer(counts.bad)),
            ("failed", .integer(counts.failed)),
            ("responseRate", decimal(counts.responseRate)),
        ])
    }

    static func decimal(_ value: Tenths?) -> JSONDocument {
        value.map { .number($0.doubleValue) } ?? .null
    }
}
