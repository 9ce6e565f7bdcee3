import Foundation
import SurveyDomain

// What the templates show. Plain values only: the templates hold no logic beyond "is it
// there" and "repeat it", and every figure is formatted here, once.

/// The frame of every page.
struct Layout {
    var title: String
    var css: String
    var script: String
    var icon: String
    var signedIn = false
    var companyName = ""
    var csrf = ""
    var nav: [NavItem] = []

    init(title: String, resources: DashboardResources) {
        self.title = title
        css = resources.url("dashboard.css")
        script = resources.url("dashboard.js")
        icon = resources.url("icon.svg")
    }

    struct NavItem {
        var label: String
        var href: String
        var current: Bool
    }

    /// The frame of a signed-in page, with the navigation and the sign-out form's token.
    static func signedIn(
        title: String, current: String, company: Company, secret: DashboardSessionSecret, resources: DashboardResources
    ) -> Layout {
        var layout = Layout(title: title, resources: resources)
        layout.signedIn = true
        layout.companyName = company.name
        layout.csrf = secret.csrfToken
        layout.nav = [("Overview", "/dashboard"), ("Requests", "/dashboard/requests"), ("Usage", "/dashboard/usage")].map {
            NavItem(label: $0.0, href: $0.1, current: $0.1 == current)
        }
        return layout
    }
}

struct SignInPage {
    var layout: Layout
    var csrf: String
    var error: String?
}

struct ErrorPage {
    var layout: Layout
    var status: Int
    var title: String
    var detail: String?
}

/// A `<select>` option.
struct Option {
    var value: String
    var label: String
    var selected: Bool
}

/// The filter form of a report page; submitting it (GET) changes the URL.
struct FilterForm {
    var action: String
    var periods: [Option]
    var custom: Bool
    var from: String
    var to: String
    var channels: [Option]
    var segments: String
    var modes: [Option]
    var intervals: [Option]
    var problems: [ProblemView] { didSet { hasProblems = !problems.isEmpty } }
    var hasProblems: Bool
    /// What the period covers, in words.
    var periodText: String

    struct ProblemView {
        var parameter: String
        var message: String
    }

    init(action: String, filters: DashboardFilters, today: String, problems: [DashboardFilters.Problem]) {
        self.action = action
        let (from, to) = filters.days(today: today)
        var customSelected = false
        if case .range = filters.period { customSelected = true }
        periods = DashboardFilters.presetDays.map { days in
            Option(value: String(days), label: "Last \(days) days", selected: filters.period == .lastDays(days))
        } + [Option(value: "custom", label: "From … to …", selected: customSelected)]
        custom = customSelected
        self.from = from
        self.to = to
        channels = [Option(value: "", label: "All channels", selected: filters.channel == nil)]
            + Channel.allCases.map { Option(value: $0.rawValue, label: $0.rawValue, selected: filters.channel == $0) }
        segments = filters.segments.joined(separator: ", ")
        modes = [
            Option(value: "ALL", label: "all of them", selected: filters.segmentMode == .all),
            Option(value: "ANY", label: "any of them", selected: filters.segmentMode == .any),
        ]
        let interval = filters.trendInterval(today: today)
        intervals = [ReportInterval.week, .month].map { Option(value: $0.rawValue, label: "By \($0.rawValue)", selected: interval == $0) }
        self.problems = problems.map { ProblemView(parameter: $0.parameter, message: $0.message) }
        hasProblems = !problems.isEmpty
        periodText = "\(Format.day(from)) to \(Format.day(to))"
    }
}

/// A report's headline figures.
struct Figures {
    var nps: String
    var npsValue: String
    var margin: String?
    var requests: String
    var requestsValue: Int64
    var responses: String
    var responsesValue: Int64
    var goodResponses: Int64
    var badResponses: Int64
    var failed: Int64
    var responseRate: String
    var responseRateValue: String
    var promoters: Int64
    var passives: Int64
    var detractors: Int64
    var promoterShare: String
    var passiveShare: String
    var detractorShare: String
    var split: String
    var hasResponses: Bool

    init(_ counts: ReportCounts, id: String) {
        nps = counts.score.map { Format.signed($0) } ?? "—"
        npsValue = counts.score?.description ?? ""
        margin = counts.marginOfError.map { "± \($0)" }
        requests = Format.count(counts.requests)
        requestsValue = counts.requests
        responses = Format.count(counts.responses)
        responsesValue = counts.responses
        goodResponses = counts.good
        badResponses = counts.bad
        failed = counts.failed
        responseRate = counts.responseRate.map { "\($0) %" } ?? "—"
        responseRateValue = counts.responseRate?.description ?? ""
        promoters = counts.promoters
        passives = counts.passives
        detractors = counts.detractors
        let scored = Int(counts.promoters + counts.passives + counts.detractors)
        promoterShare = SVGCharts.percent(Int(counts.promoters), scored)
        passiveShare = SVGCharts.percent(Int(counts.passives), scored)
        detractorShare = SVGCharts.percent(Int(counts.detractors), scored)
        split = SVGCharts.split(promoters: Int(counts.promoters), passives: Int(counts.passives), detractors: Int(counts.detractors), id: id)
        hasResponses = scored > 0
    }
}

/// A trend chart and the table of its values.
struct TrendView {
    var svg: String
    var interval: String
    var rows: [Row]

    struct Row {
        var label: String
        var nps: String
        var responses: Int64
        var requests: Int64
    }

    init(buckets: [Range<Date>], counts: [ReportCounts], interval: ReportInterval, zone: TimeZone, id: String, title: String) {
        let labels = buckets.map { Format.bucket($0.lowerBound, interval: interval, zone: zone) }
        rows = zip(labels, counts).map { label, counts in
            Row(label: label, nps: counts.score.map { Format.signed($0) } ?? "—", responses: counts.responses, requests: counts.requests)
        }
        svg = SVGCharts.trend(
            zip(labels, counts).map { SVGCharts.TrendPoint(label: $0, nps: $1.score?.doubleValue, responses: Int($1.responses)) },
            id: id, title: title)
        self.interval = interval.rawValue
    }
}

/// A row of a breakdown table (by survey, segment or language).
struct BreakdownRow {
    var name: String
    var href: String?
    var nps: String
    var margin: String
    var responses: String
    var requests: String
    var responseRate: String
    var sparkline: String?

    /// `counts` `nil`: not known here (shown as "—").
    init(name: String, href: String? = nil, counts: ReportCounts?, sparkline: String? = nil) {
        self.name = name
        self.href = href
        nps = counts?.score.map { Format.signed($0) } ?? "—"
        margin = counts?.marginOfError.map { "± \($0)" } ?? ""
        responses = counts.map { Format.count($0.responses) } ?? "—"
        requests = counts.map { Format.count($0.requests) } ?? "—"
        responseRate = counts?.responseRate.map { "\($0) %" } ?? "—"
        self.sparkline = sparkline
    }
}

/// How figures and dates read on the pages.
enum Format {
    /// 12345 → "12,345".
    static func count(_ value: Int64) -> String {
        let digits = String(value.magnitude)
        var grouped = ""
        for (index, digit) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { grouped += "," }
            grouped.append(digit)
        }
        return (value < 0 ? "-" : "") + grouped
    }

    /// An NPS with its sign: "+42", "-7.5", "0".
    static func signed(_ value: Tenths) -> String {
        value.tenths > 0 ? "+\(value)" : "\(value)"
    }

    /// "2026-12-07" → "7 Dec 2026".
    static func day(_ text: String) -> String {
        let parts = text.split(separator: "-")
        guard parts.count == 3, let month = Int(parts[1]), (1...12).contains(month), let day = Int(parts[2]) else { return text }
        return "\(day) \(monthNames[month - 1]) \(parts[0])"
    }

    /// A bucket's label: the week's Monday ("7 Dec") or the month ("Dec 2026").
    static func bucket(_ start: Date, interval: ReportInterval, zone: TimeZone) -> String {
        let parts = ReportCalendar.calendar(in: zone).dateComponents([.year, .month, .day], from: start)
        let month = monthNames[(parts.month ?? 1) - 1]
        switch interval {
        case .month: return "\(month) \(parts.year ?? 0)"
        case .week, .day: return "\(parts.day ?? 1) \(month)"
        }
    }

    /// A moment as the company reads it: "2026-12-07 09:15".
    static func moment(_ date: Date, zone: TimeZone) -> String {
        String(Timestamp.format(date, in: zone).prefix(16)).replacingOccurrences(of: "T", with: " ")
    }

    static let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
}
