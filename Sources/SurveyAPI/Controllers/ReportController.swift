import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import SurveyDomain
import SurveyStorage

/// `GET /report`, `GET /surveys/{id}/report` and their `/trend`s: NPS and response
/// statistics over a period, counted by PostgreSQL.
struct ReportController {
    let reports: ReportRepository
    /// The clock for default periods and the report's `date`; tests pin it.
    var now: @Sendable () -> Date = { Date() }

    func addRoutes(to routes: Routes<TenantRequestContext>) {
        routes.on(.get, "report", use: companyReport)
        routes.on(.get, "report/trend", use: companyTrend)
        routes.on(.get, "surveys/:id/report", use: surveyReport)
        routes.on(.get, "surveys/:id/report/trend", use: surveyTrend)
    }

    @Sendable func companyReport(request: Request, context: TenantRequestContext) async throws -> JSONReply<ReportResponse> {
        try await report(request, context, survey: nil, trend: false)
    }

    @Sendable func companyTrend(request: Request, context: TenantRequestContext) async throws -> JSONReply<ReportResponse> {
        try await report(request, context, survey: nil, trend: true)
    }

    @Sendable func surveyReport(request: Request, context: TenantRequestContext) async throws -> JSONReply<ReportResponse> {
        try await report(request, context, survey: try surveyID(context), trend: false)
    }

    @Sendable func surveyTrend(request: Request, context: TenantRequestContext) async throws -> JSONReply<ReportResponse> {
        try await report(request, context, survey: try surveyID(context), trend: true)
    }

    private func report(_ request: Request, _ context: TenantRequestContext, survey: SurveyID?, trend: Bool) async throws -> JSONReply<ReportResponse> {
        let now = self.now()
        let query = try Self.query(request.uri.queryParameters, survey: survey, trend: trend, now: now)
        let buckets: [Range<Date>]
        do {
            buckets = try query.buckets()
        } catch {
            throw Self.problem(error)
        }
        do {
            let result = try await reports.report(query, buckets: buckets, company: context.company)
            // How fresh the numbers are: a hot standby answers with what it has replayed.
            var headers: HTTPFields = [:]
            if let asOf = result.dataAsOf { headers[.dataAsOf] = Timestamp.format(asOf) }
            return JSONReply(
                headers: headers, body: ReportResponse(query: query, buckets: trend ? buckets : nil, result: result, date: now))
        } catch ReportRepository.Failure.surveyNotFound {
            throw Problem.notFound("No survey \(survey.map { "\($0)" } ?? "").")
        } catch ReportRepository.Failure.tooManyGroups {
            throw Problem.ruleViolation([
                .init(
                    field: "groupBy",
                    message: "the breakdown has more than \(ReportLimits.maximumGroups) entries; narrow it with segments or a shorter period")
            ])
        }
    }

    static let reportParameters: Set<Substring> = ["startDate", "endDate", "timezone", "channel", "segments", "segmentMode", "groupBy"]
    static let trendParameters: Set<Substring> = ["startDate", "endDate", "timezone", "channel", "segments", "segmentMode", "interval"]

    /// Reads the query string: unknown and repeated parameters are refused (a misspelt
    /// `startdate` must not silently report the default period).
    static func query(_ parameters: FlatDictionary<Substring, Substring>, survey: SurveyID?, trend: Bool, now: Date) throws -> ReportQuery {
        let errors = QueryParameters.problems(parameters, known: trend ? trendParameters : reportParameters) { name in
            name == "interval" ? " (trends only: /report/trend)" : name == "groupBy" ? " (reports only, not trends)" : ""
        }
        func value(_ name: Substring) -> String? { parameters[name].map(String.init) }
        let raw = ReportParameters(
            startDate: value("startDate"), endDate: value("endDate"), timezone: value("timezone"), channel: value("channel"),
            segments: parameters[values: "segments"].map(String.init), segmentMode: value("segmentMode"),
            interval: value("interval") ?? (trend ? ReportInterval.day.rawValue : nil), groupBy: value("groupBy"))
        do {
            let query = try raw.query(survey: survey, now: now)
            guard errors.isEmpty else { throw Problem.validation(errors) }
            return query
        } catch let error as ReportParameterError {
            guard errors.isEmpty else {
                throw Problem.validation(errors + error.problems.map { .init(field: $0.parameter, message: $0.message) })
            }
            throw problem(error)
        }
    }

    /// 422 when every problem is a broken rule, else 400 listing them all.
    static func problem(_ error: ReportParameterError) -> Problem {
        let fields = error.problems.map { Problem.FieldError(field: $0.parameter, message: $0.message) }
        return error.isOnlyRules ? .ruleViolation(fields) : .validation(fields)
    }

    private func surveyID(_ context: TenantRequestContext) throws -> SurveyID {
        guard let id = SurveyID(parsing: (context.parameters.get("id") ?? "")[...]) else {
            throw Problem.invalidField("id", "must be a survey id (a positive integer)")
        }
        return id
    }
}

extension HTTPField.Name {
    static let dataAsOf = Self("Data-As-Of")!
}
