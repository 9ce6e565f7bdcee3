import Foundation
import Hummingbird
import SurveyDomain

/// The query of `GET /requests`, read and checked: which requests, in which order, how
/// many, and in which format. Every bad parameter is reported at once; unknown and
/// repeated ones are refused (a misspelt `referenceid` must not list everything).
struct RequestListing: Sendable {
    enum Format: String, Sendable, CaseIterable {
        case json
        case csv
        case ndjson

        var contentType: String {
            switch self {
            case .json: "application/json; charset=utf-8"
            case .csv: "text/csv; charset=utf-8; header=present"
            case .ndjson: "application/x-ndjson"
            }
        }
    }

    var filter: RequestFilter
    var zone: TimeZone
    var order: RequestOrder
    var after: SurveyDomain.RequestID?
    var limit: Int
    var format: Format
    /// The raw query string, for the next page's link.
    var rawQuery: String

    static let defaultPageSize = 100
    static let pageSizes = 1...1000
    static let parameters: Set<Substring> = [
        "surveyId", "referenceId", "status", "startDate", "endDate", "timezone", "segments", "segmentMode", "channel",
        "limit", "after", "order", "format",
    ]

    init(request: Request, now: Date) throws {
        let parameters = request.uri.queryParameters
        var errors = QueryParameters.problems(parameters, known: Self.parameters)
        func value(_ name: Substring) -> String? { parameters[name].map(String.init) }

        var survey: SurveyID?
        if let text = value("surveyId") {
            survey = SurveyID(parsing: text[...])
            if survey == nil { errors.append(.init(field: "surveyId", message: "must be a survey id (a positive integer)")) }
        }
        let referenceID = value("referenceId")
        if let referenceID, !SendLimits.referenceIDLength.contains(referenceID.count) {
            errors.append(.init(field: "referenceId", message: "must be \(SendLimits.referenceIDLength.lowerBound) to \(SendLimits.referenceIDLength.upperBound) characters"))
        }
        var status: RequestStatus?
        if let text = value("status") {
            status = RequestStatus(rawValue: text)
            if status == nil {
                errors.append(.init(field: "status", message: "must be one of \(RequestStatus.allCases.map(\.rawValue).joined(separator: ", "))"))
            }
        }
        limit = Self.defaultPageSize
        if let text = value("limit") {
            if let number = Int(text), Self.pageSizes.contains(number) {
                limit = number
            } else {
                errors.append(.init(field: "limit", message: "must be an integer from \(Self.pageSizes.lowerBound) to \(Self.pageSizes.upperBound)"))
            }
        }
        if let text = value("after") {
            after = SurveyDomain.RequestID(parsing: text[...])
            if after == nil { errors.append(.init(field: "after", message: "must be a request id (a positive integer)")) }
        }
        order = .newest
        if let text = value("order") {
            if let parsed = RequestOrder(rawValue: text) {
                order = parsed
            } else {
                errors.append(.init(field: "order", message: "must be newest or oldest"))
            }
        }
        format = .json
        if let text = value("format") {
            if let parsed = Format(rawValue: text) {
                format = parsed
            } else {
                errors.append(.init(field: "format", message: "must be one of json, csv, ndjson"))
            }
        } else if let accept = request.headers[.accept] {
            guard let negotiated = Self.negotiate(accept) else {
                throw Problem.notAcceptable(
                    "This list comes as application/json, text/csv or application/x-ndjson (or choose with format=json|csv|ndjson).")
            }
            format = negotiated
        }
        // Each valid alone, together a broken rule (422, unless something is malformed too).
        var rules: [Problem.FieldError] = []
        if format != .json, value("limit") != nil {
            rules.append(.init(field: "limit", message: "an export holds the whole period; page only the JSON list"))
        }
        rawQuery = request.uri.query ?? ""

        // The period, time zone, channel and segments follow the reports' rules exactly.
        let period = ReportParameters(
            startDate: value("startDate"), endDate: value("endDate"), timezone: value("timezone"), channel: value("channel"),
            segments: parameters[values: "segments"].map(String.init), segmentMode: value("segmentMode"))
        do {
            let query = try period.query(survey: survey, now: now)
            guard errors.isEmpty else { throw Problem.validation(errors + rules) }
            guard rules.isEmpty else { throw Problem.ruleViolation(rules) }
            filter = RequestFilter(
                period: query.period, survey: survey, referenceID: referenceID, status: status, channel: query.filter.channel,
                segments: query.filter.segments, segmentMode: query.filter.segmentMode)
            zone = query.timeZone
        } catch let error as ReportParameterError {
            let problems = error.problems.map { Problem.FieldError(field: $0.parameter, message: $0.message) }
            guard errors.isEmpty, error.isOnlyRules else { throw Problem.validation(errors + rules + problems) }
            throw Problem.ruleViolation(rules + problems)
        }
    }

    /// The next page: the same query with `after` moved on.
    func nextPage(after id: SurveyDomain.RequestID, path: String) -> String {
        let kept = rawQuery.split(separator: "&").filter { !($0 == "after" || $0.hasPrefix("after=")) }
        return path + "?" + (kept + ["after=\(id)"]).joined(separator: "&")
    }

    /// The first type of `Accept` this list can be, in the client's order (quality values
    /// other than 0 are not weighed: a client asking for several formats gets its first).
    static func negotiate(_ accept: String) -> Format? {
        for range in accept.split(separator: ",") {
            let parts = range.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            // `q=0` means "not this one".
            if parts.dropFirst().contains(where: { $0.hasPrefix("q=") && Double($0.dropFirst(2)) == 0 }) { continue }
            let type = parts.first ?? ""
            switch type {
            case "application/json", "application/*", "*/*", "": return .json
            case "text/csv", "text/*": return .csv
            case "application/x-ndjson", "application/ndjson", "application/jsonl": return .ndjson
            default: continue
            }
        }
        return nil
    }
}
