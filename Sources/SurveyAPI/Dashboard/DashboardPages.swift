import Foundation
import Hummingbird
import SurveyDomain
import SurveyStorage

/// The dashboard's pages, from the storage code the API uses: each report is the one the
/// API's `GET /report…` returns for the parameters the page shows under "Same numbers
/// from the API".
struct DashboardPages: Sendable {
    let resources: DashboardResources
    let surveys: SurveyRepository
    let reports: ReportRepository
    let requests: RequestRepository
    let replies: ReplyRepository
    let companies: CompanyRepository
    /// The clock for "today" and the usage month; tests pin it.
    var now: @Sendable () -> Date = { Date() }

    /// Surveys listed on the overview (the newest; the API lists them all).
    static let surveysShown = 100
    static let requestsPerPage = 50

    // MARK: Overview

    struct OverviewPage {
        var layout: Layout
        var form: FilterForm
        var figures: Figures
        var trend: TrendView
        var surveys: [BreakdownRow]
        var hasSurveys: Bool
        var apiReport: String
        var apiTrend: String
    }

    func overview(_ request: Request, signedIn: SignedIn) async throws -> String {
        let view = try ReportView(request, company: signedIn.company, survey: nil, now: now())
        let company = signedIn.company.id
        async let list = surveys.list(after: nil, limit: Self.surveysShown, company: company)
        let (bySurvey, trendCounts) = try await overviewCounts(view, company: company)
        let listed = try await list
        let counts = bySurvey?.mapValues { $0.reduce(.zero, +) } ?? [:]
        // Surveys with answers first (most first), then the rest, newest first.
        let rows = listed.sorted { (counts[$0.id]?.responses ?? 0, $0.id) > (counts[$1.id]?.responses ?? 0, $1.id) }.map { survey in
            // Without the breakdown (too many surveys answered), "—" rather than a false 0.
            BreakdownRow(
                name: survey.name, href: "/dashboard/surveys/\(survey.id)" + view.querySuffix,
                counts: bySurvey == nil ? nil : counts[survey.id] ?? .zero,
                sparkline: bySurvey.map { SVGCharts.sparkline(($0[survey.id] ?? []).map { $0.score?.doubleValue }) })
        }
        let total = trendCounts.reduce(.zero, +)
        let page = OverviewPage(
            layout: .signedIn(title: "Overview", current: "/dashboard", company: signedIn.company, secret: signedIn.secret, resources: resources),
            form: view.form(action: "/dashboard"), figures: Figures(total, id: "split"),
            trend: TrendView(
                buckets: view.buckets, counts: trendCounts, interval: view.interval, zone: view.query.timeZone, id: "trend",
                title: "NPS by \(view.interval.rawValue)"),
            surveys: rows, hasSurveys: !rows.isEmpty, apiReport: view.apiPath("report"), apiTrend: view.apiPath("report/trend", trend: true))
        return resources.render(page, template: "overview")
    }

    /// Each survey's counts per bucket and the company's per bucket: one statement (their
    /// sums are the API's report and trend, to the unit). Past the breakdown's limit of
    /// surveys, the company's trend comes from a statement of its own.
    private func overviewCounts(_ view: ReportView, company: CompanyID) async throws -> ([SurveyID: [ReportCounts]]?, [ReportCounts]) {
        do {
            let bySurvey = try await reports.surveyTrends(view.trendQuery, buckets: view.buckets, company: company)
            let trend = (0..<view.buckets.count).map { bucket in bySurvey.values.reduce(ReportCounts.zero) { $0 + $1[bucket] } }
            return (bySurvey, trend)
        } catch ReportRepository.Failure.tooManyGroups {
            let trend = try await reports.report(view.trendQuery, buckets: view.buckets, company: company)
            return (nil, trend.buckets)
        }
    }

    // MARK: Survey

    struct SurveyPage {
        var layout: Layout
        var name: String
        var interactionType: String
        var questions: [QuestionView]
        var form: FilterForm
        var figures: Figures
        var trend: TrendView
        var segments: [BreakdownRow]
        var languages: [BreakdownRow]
        var requestsLink: String
        var apiReport: String
        var apiTrend: String

        struct QuestionView {
            var language: String
            var body: String
        }
    }

    func survey(_ id: SurveyID, _ request: Request, signedIn: SignedIn) async throws -> String {
        let company = signedIn.company.id
        guard let survey = try await surveys.find(id, company: company) else { throw Problem.notFound("There is no survey \(id).") }
        let view = try ReportView(request, company: signedIn.company, survey: id, now: now())
        var bySegment = view.query
        bySegment.grouping = .segment
        var byLanguage = view.query
        byLanguage.grouping = .language
        async let segmentResult = reports.report(bySegment, buckets: [bySegment.period], company: company)
        async let languageResult = reports.report(byLanguage, buckets: [byLanguage.period], company: company)
        async let trend = reports.report(view.trendQuery, buckets: view.buckets, company: company)
        let (segments, languages, trendResult) = try await (segmentResult, languageResult, trend)

        let page = SurveyPage(
            layout: .signedIn(title: survey.name, current: "", company: signedIn.company, secret: signedIn.secret, resources: resources),
            name: survey.name, interactionType: survey.interactionType,
            questions: survey.questions.map { SurveyPage.QuestionView(language: $0.language.description, body: $0.body) },
            form: view.form(action: "/dashboard/surveys/\(id)"), figures: Figures(segments.total, id: "split"),
            trend: TrendView(
                buckets: view.buckets, counts: trendResult.buckets, interval: view.interval, zone: view.query.timeZone, id: "trend",
                title: "NPS of \(survey.name) by \(view.interval.rawValue)"),
            segments: segments.groups.map { key, counts in
                guard case .segment(let name) = key else { return BreakdownRow(name: "?", counts: counts) }
                return BreakdownRow(name: name ?? "(no segment)", counts: counts)
            },
            languages: languages.groups.map { key, counts in
                guard case .language(let name) = key else { return BreakdownRow(name: "?", counts: counts) }
                return BreakdownRow(name: name ?? "(no language)", counts: counts)
            },
            requestsLink: "/dashboard/requests?" + DashboardURL.query(view.filters.queryItems + [("surveyId", String(id.rawValue))]),
            apiReport: view.apiPath("surveys/\(id)/report"), apiTrend: view.apiPath("surveys/\(id)/report/trend", trend: true))
        return resources.render(page, template: "survey")
    }

    // MARK: Requests

    struct RequestsPage {
        var layout: Layout
        var form: FilterForm
        var surveyOptions: [Option]
        var statusOptions: [Option]
        var referenceID: String
        var rows: [Row]
        var hasRows: Bool
        var next: String?
        var csv: String

        struct Row {
            var id: Int64
            var created: String
            var survey: String
            var surveyHref: String
            var status: String
            var failure: String
            var score: String
            var referenceID: String
            var segments: String
        }
    }

    func requests(_ request: Request, signedIn: SignedIn) async throws -> String {
        let company = signedIn.company.id
        let view = try ReportView(request, company: signedIn.company, survey: nil, now: now())
        let parameters = DashboardURL.parameters(request)
        func value(_ name: String) -> String? { parameters.last { $0.0 == name }.map(\.1).flatMap { $0.isEmpty ? nil : $0 } }
        var problems = view.problems
        let survey = value("surveyId").flatMap { SurveyID(parsing: $0[...]) }
        if value("surveyId") != nil, survey == nil { problems.append(.init(parameter: "surveyId", message: "Choose a survey from the list.")) }
        let status = value("status").flatMap(RequestStatus.init(rawValue:))
        if value("status") != nil, status == nil { problems.append(.init(parameter: "status", message: "Choose a status from the list.")) }
        var referenceID = value("referenceId")
        if let text = referenceID, !SendLimits.referenceIDLength.contains(text.count) {
            problems.append(.init(parameter: "referenceId", message: "A referenceId is 1 to \(SendLimits.referenceIDLength.upperBound) characters."))
            referenceID = nil
        }
        let after = value("after").flatMap { SurveyDomain.RequestID(parsing: $0[...]) }
        let filter = RequestFilter(
            period: view.query.period, survey: survey, referenceID: referenceID, status: status, channel: view.query.filter.channel,
            segments: view.query.filter.segments, segmentMode: view.query.filter.segmentMode)
        async let listed = surveys.list(after: nil, limit: Self.surveysShown, company: company)
        async let found = requests.list(filter, order: .newest, after: after, limit: Self.requestsPerPage + 1, company: company)
        let (surveyList, records) = try await (listed, found)
        let names = Dictionary(surveyList.map { ($0.id, $0.name) }, uniquingKeysWith: { first, _ in first })
        let zone = view.query.timeZone

        var own: [(String, String)] = []
        if let survey { own.append(("surveyId", String(survey.rawValue))) }
        if let status { own.append(("status", status.rawValue)) }
        if let referenceID { own.append(("referenceId", referenceID)) }
        let shown = records.prefix(Self.requestsPerPage)
        let next =
            records.count > Self.requestsPerPage
            ? "/dashboard/requests?" + DashboardURL.query(view.filters.queryItems + own + [("after", String(shown.last!.id.rawValue))]) : nil
        var form = view.form(action: "/dashboard/requests")
        form.problems = problems.map { FilterForm.ProblemView(parameter: $0.parameter, message: $0.message) }
        let page = RequestsPage(
            layout: .signedIn(title: "Requests", current: "/dashboard/requests", company: signedIn.company, secret: signedIn.secret, resources: resources),
            form: form,
            surveyOptions: [Option(value: "", label: "All surveys", selected: survey == nil)]
                + surveyList.map { Option(value: String($0.id.rawValue), label: $0.name, selected: $0.id == survey) },
            statusOptions: [Option(value: "", label: "Any status", selected: status == nil)]
                + RequestStatus.allCases.map { Option(value: $0.rawValue, label: $0.rawValue, selected: $0 == status) },
            referenceID: referenceID ?? "",
            rows: shown.map { record in
                RequestsPage.Row(
                    id: record.id.rawValue, created: Format.moment(record.createdAt, zone: zone),
                    survey: names[record.survey] ?? "Survey \(record.survey)",
                    surveyHref: "/dashboard/surveys/\(record.survey)", status: record.status.rawValue,
                    failure: record.failureReason ?? "", score: record.score.map(String.init) ?? "",
                    referenceID: record.referenceID ?? "", segments: record.segments.joined(separator: ", "))
            },
            hasRows: !shown.isEmpty, next: next,
            csv: "/dashboard/requests.csv?" + DashboardURL.query(view.apiItems(trend: false) + own + [("format", "csv")]))
        return resources.render(page, template: "requests")
    }

    // MARK: Usage

    struct UsagePage {
        var layout: Layout
        var month: String
        var messages: String
        var messagesValue: Int
        var segments: String
        var segmentsValue: Int
        var emails: String
        var calls: String
        var callMinutes: String
        var cap: Int
        var queuedToday: Int
        var capShare: String
        var chart: String
        var days: [Day]
        var apiUsage: String

        struct Day {
            var day: String
            var queued: Int
            var messages: Int
            var segments: Int
        }
    }

    func usage(_ request: Request, signedIn: SignedIn) async throws -> String {
        let company = signedIn.company.id
        let utc = TimeZone(identifier: "UTC")!
        let calendar = ReportCalendar.calendar(in: utc)
        let parts = calendar.dateComponents([.year, .month], from: now())
        let start = calendar.date(from: DateComponents(year: parts.year, month: parts.month, day: 1))!
        let end = calendar.date(byAdding: .month, value: 1, to: start)!
        let month = String(format: "%04d-%02d", parts.year!, parts.month!)
        async let totals = replies.usage(company: company, from: start, to: end)
        async let allowances = companies.allowances(company)
        async let daily = replies.dailyUsage(company: company, from: start, to: end)
        let (usage, today, days) = try await (totals, allowances.sms, daily)
        let (messages, segments) = (usage.messages, usage.segments)
        let labels = days.map { String(calendar.component(.day, from: $0.day)) }
        let page = UsagePage(
            layout: .signedIn(title: "Usage", current: "/dashboard/usage", company: signedIn.company, secret: signedIn.secret, resources: resources),
            month: "\(Format.monthNames[parts.month! - 1]) \(parts.year!)",
            messages: Format.count(Int64(messages)), messagesValue: messages, segments: Format.count(Int64(segments)),
            segmentsValue: segments, emails: Format.count(Int64(usage.emails)), calls: Format.count(Int64(usage.calls)),
            callMinutes: Format.count(Int64(usage.callMinutes)), cap: today.cap, queuedToday: today.queuedToday,
            capShare: SVGCharts.percent(today.queuedToday, max(today.cap, 1)),
            chart: SVGCharts.dailyBars(
                zip(labels, days).map { (label: $0, value: $1.messages) }, limit: today.cap, id: "daily",
                title: "Messages sent per day (UTC) and the daily cap", unit: "messages"),
            days: zip(labels, days).map { label, day in
                UsagePage.Day(day: "\(label) \(Format.monthNames[parts.month! - 1])", queued: day.queued, messages: day.messages, segments: day.segments)
            },
            apiUsage: "/\(apiBasePath)/usage?month=\(month)")
        return resources.render(page, template: "usage")
    }
}

/// A report page's parameters: the filters from the URL, in the company's time zone, as
/// the API's report and trend queries.
struct ReportView {
    var filters: DashboardFilters
    var problems: [DashboardFilters.Problem]
    var today: String
    var timeZoneName: String
    var query: ReportQuery
    var trendQuery: ReportQuery
    var buckets: [Range<Date>]
    var interval: ReportInterval

    init(_ request: Request, company: Company, survey: SurveyID?, now: Date) throws {
        let zoneName = ReportTimeZones.zone(named: company.settings.timeZone) != nil ? company.settings.timeZone : "UTC"
        let zone = ReportTimeZones.zone(named: zoneName)!
        today = DashboardFilters.today(in: zone, now: now)
        timeZoneName = zoneName
        do {
            filters = try DashboardFilters(parameters: DashboardURL.parameters(request))
            problems = []
        } catch {
            filters = error.usable
            problems = error.problems
        }
        // The API's rules (a period within 1970–9000 and at most 5 years) may refuse what
        // the form allowed: then the default period, with why.
        do {
            (query, trendQuery, buckets) = try Self.queries(filters, zone: zoneName, today: today, survey: survey, now: now)
        } catch let error as ReportParameterError {
            problems += error.problems.map {
                DashboardFilters.Problem(parameter: $0.parameter == "endDate" ? "to" : "from", message: $0.message.prefix(1).uppercased() + $0.message.dropFirst() + ".")
            }
            filters.period = .lastDays(30)
            (query, trendQuery, buckets) = try Self.queries(filters, zone: zoneName, today: today, survey: survey, now: now)
        }
        interval = filters.trendInterval(today: today)
    }

    private static func queries(
        _ filters: DashboardFilters, zone: String, today: String, survey: SurveyID?, now: Date
    ) throws -> (ReportQuery, ReportQuery, [Range<Date>]) {
        let query = try filters.reportParameters(timeZone: zone, today: today).query(survey: survey, now: now)
        let trend = try filters.reportParameters(timeZone: zone, today: today, trend: true).query(survey: survey, now: now)
        return (query, trend, try trend.buckets())
    }

    func form(action: String) -> FilterForm {
        FilterForm(action: action, filters: filters, today: today, problems: problems)
    }

    /// `?…` keeping this view's filters on a link to another page.
    var querySuffix: String {
        let items = filters.queryItems
        return items.isEmpty ? "" : "?" + DashboardURL.query(items)
    }

    /// The API's parameters for the same figures.
    func apiItems(trend: Bool) -> [(String, String)] {
        let parameters = filters.reportParameters(timeZone: timeZoneName, today: today, trend: trend)
        var items: [(String, String)] = [
            ("startDate", parameters.startDate ?? ""), ("endDate", parameters.endDate ?? ""), ("timezone", timeZoneName),
        ]
        if let channel = parameters.channel { items.append(("channel", channel)) }
        if !parameters.segments.isEmpty { items.append(("segments", parameters.segments.joined(separator: ","))) }
        if filters.segmentMode != .all { items.append(("segmentMode", filters.segmentMode.rawValue)) }
        if trend, let interval = parameters.interval { items.append(("interval", interval)) }
        return items
    }

    /// The API call that returns the same numbers, for developers (and the tests).
    func apiPath(_ path: String, trend: Bool = false) -> String {
        "/\(apiBasePath)/\(path)?" + DashboardURL.query(apiItems(trend: trend))
    }
}

/// Query strings of the dashboard's own URLs.
enum DashboardURL {
    /// The query's pairs, decoded as browsers encode forms (`+` is a space).
    static func parameters(_ request: Request) -> [(String, String)] {
        (request.uri.query ?? "").split(separator: "&").compactMap { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ text: Substring) -> String? { text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding }
            guard let name = decode(parts[0]), let value = decode(parts.count > 1 ? parts[1] : "") else { return nil }
            return (name, value)
        }
    }

    static func query(_ items: [(String, String)]) -> String {
        items.map { "\(escape($0.0))=\(escape($0.1))" }.joined(separator: "&")
    }

    static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
    }

    private static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
}
