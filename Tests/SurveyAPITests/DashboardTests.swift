import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Postgres
import SurveyAPI
import SurveyDomain
import SurveyStorage
import TestSupport
import Testing

/// Issue 15: the dashboard's sessions and pages, in-process. The browser tests
/// (`scripts/dashboard-test`) drive the same pages in headless Chromium.
@Suite struct DashboardTests {
    let harness: Harness

    init() async throws {
        harness = try await Harness()
    }

    static let resources = try! DashboardResources(
        directory: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("dashboard").path)

    func configuration(limits: APIConfiguration.Limits = Harness.generousLimits) -> APIConfiguration {
        var configuration = Harness.configuration(limits: limits)
        configuration.dashboard = Self.resources
        return configuration
    }

    // MARK: Signing in

    @Test func signInExchangesTheTokenForAHashedSessionCookie() async throws {
        let tenant = try await harness.company()
        try await harness.test(configuration: configuration()) { client in
            var browser = Browser(client: client)
            let form = try await browser.get("/dashboard")
            #expect(form.status == .ok)
            #expect(form.text.contains(#"name="token""#) && form.text.contains(#"type="password""#))
            let signInCookie = try #require(form.headers[values: .setCookie].first { $0.hasPrefix("surveyd_sign_in=") })
            #expect(signInCookie.contains("HttpOnly") && signInCookie.contains("SameSite=Strict") && signInCookie.contains("Path=/dashboard"))
            #expect(!signInCookie.contains("Secure"), "plain http: a Secure cookie would never come back")

            let signedIn = try await browser.signIn(token: tenant.token)
            #expect(signedIn.status == .seeOther)
            #expect(signedIn.headers[.location] == "/dashboard")
            let cookie = try #require(signedIn.headers[values: .setCookie].first { $0.hasPrefix("surveyd_session=") })
            #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"))
            let secret = try #require(browser.cookies["surveyd_session"])
            #expect(secret.count == 43 && !secret.contains(tenant.token))

            // Stored hashed: the table holds SHA-256 of the cookie, never the cookie.
            let stored = try await harness.superuser().withConnection { connection in
                try await connection.query("SELECT session_hash FROM dashboard_sessions WHERE company_id = \(tenant.id)")
                    .map { try $0.decode(Data.self) }
            }
            #expect(stored == [Data(SHA256.hash(data: Data(secret.utf8)))])

            let overview = try await browser.get("/dashboard")
            #expect(overview.status == .ok)
            #expect(overview.text.contains("<h1>Overview</h1>"))
            #expect(!overview.text.contains(tenant.token), "the token never appears in a page")
            #expect(!overview.text.contains(secret), "nor does the session's secret")
        }
    }

    @Test func theCookieIsSecureBehindAnHTTPSProxy() async throws {
        let tenant = try await harness.company()
        try await harness.test(configuration: configuration()) { client in
            var browser = Browser(client: client, extraHeaders: [HTTPField.Name("X-Forwarded-Proto")!: "https"])
            let form = try await browser.get("/dashboard")
            #expect(form.headers[values: .setCookie].allSatisfy { $0.contains("; Secure") })
            let signedIn = try await browser.signIn(token: tenant.token)
            #expect(signedIn.headers[values: .setCookie].allSatisfy { $0.contains("; Secure") })
        }
    }

    @Test func wrongTokensAreRefusedAndCountAsFailedAuthentications() async throws {
        var limits = Harness.generousLimits
        limits.failedAuthentication = RateLimit(ratePerSecond: 0.001, burst: 2)
        // An address of this test's own: the failure buckets are shared by every test.
        limits.trustForwardedFor = true
        let address = "198.51.100.\(UInt8.random(in: 1...254))-\(UInt32.random(in: 0...UInt32.max))"
        try await harness.test(configuration: configuration(limits: limits)) { client in
            var browser = Browser(client: client, extraHeaders: [HTTPField.Name("X-Forwarded-For")!: address])
            _ = try await browser.get("/dashboard")
            for wrong in ["nps_live_" + String(repeating: "A", count: 43), "not a token"] {
                let refused = try await browser.signIn(token: wrong)
                #expect(refused.status == .unauthorized)
                #expect(refused.text.contains("That token is not valid"))
                #expect(!refused.text.contains(wrong), "what was pasted is not echoed")
                #expect(browser.cookies["surveyd_session"] == nil)
            }
            let blocked = try await browser.signIn(token: "nps_live_" + String(repeating: "B", count: 43))
            #expect(blocked.status == .tooManyRequests)
            #expect(blocked.headers[.retryAfter] != nil)
        }
    }

    @Test func signInWithoutItsFormsTokenIsRefused() async throws {
        let tenant = try await harness.company()
        try await harness.test(configuration: configuration()) { client in
            // A cross-site form post: no sign-in cookie, or a token that does not match it.
            let body = "token=\(tenant.token)&csrf=forged"
            let noCookie = try await client.execute(
                uri: "/dashboard/sign-in", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                body: ByteBuffer(string: body))
            #expect(noCookie.status == .forbidden)
            let mismatch = try await client.execute(
                uri: "/dashboard/sign-in", method: .post,
                headers: [.contentType: "application/x-www-form-urlencoded", .cookie: "surveyd_sign_in=" + String(repeating: "x", count: 43)],
                body: ByteBuffer(string: body))
            #expect(mismatch.status == .forbidden)
            #expect(!mismatch.headers[values: .setCookie].contains { $0.hasPrefix("surveyd_session=") && !$0.hasPrefix("surveyd_session=;") })
        }
        #expect(try await harness.count("dashboard_sessions", company: tenant.id) == 0)
    }

    @Test func signOutNeedsTheSessionsCSRFTokenAndEndsTheSession() async throws {
        let tenant = try await harness.company()
        try await harness.test(configuration: configuration()) { client in
            var browser = Browser(client: client)
            _ = try await browser.get("/dashboard")
            _ = try await browser.signIn(token: tenant.token)
            let page = try await browser.get("/dashboard/usage")
            let csrf = try #require(page.text.firstMatch(of: /name="csrf" value="([A-Za-z0-9_-]+)"/)?.1)

            let forged = try await browser.post("/dashboard/sign-out", form: "csrf=" + String(repeating: "A", count: 43))
            #expect(forged.status == .forbidden)
            let missing = try await browser.post("/dashboard/sign-out", form: "")
            #expect(missing.status == .forbidden)
            #expect(try await browser.get("/dashboard/usage").status == .ok, "still signed in")

            let out = try await browser.post("/dashboard/sign-out", form: "csrf=\(csrf)")
            #expect(out.status == .seeOther)
            #expect(out.headers[values: .setCookie].contains { $0.hasPrefix("surveyd_session=;") && $0.contains("Max-Age=0") })
        }
        #expect(try await harness.count("dashboard_sessions", company: tenant.id) == 0)
    }

    @Test func forgedExpiredAndRevokedSessionsGoBackToSignIn() async throws {
        let tenant = try await harness.company()
        try await harness.test(configuration: configuration()) { client in
            for forged in ["", "x", String(repeating: "A", count: 43), "../../etc"] {
                let response = try await client.execute(uri: "/dashboard/usage", method: .get, headers: [.cookie: "surveyd_session=\(forged)"])
                #expect(response.status == .seeOther, "\(forged)")
                #expect(response.headers[.location] == "/dashboard")
            }

            var browser = Browser(client: client)
            _ = try await browser.get("/dashboard")
            _ = try await browser.signIn(token: tenant.token)
            #expect(try await browser.get("/dashboard/usage").status == .ok)
            // Idle for 12 hours and a minute.
            try await harness.superuser().withConnection { connection in
                try await connection.query(
                    "UPDATE dashboard_sessions SET last_seen_at = now() - interval '12 hours 1 minute' WHERE company_id = \(tenant.id)")
            }
            let expired = try await browser.get("/dashboard/usage")
            #expect(expired.status == .seeOther)
            #expect(expired.headers[values: .setCookie].contains { $0.hasPrefix("surveyd_session=;") })

            var second = Browser(client: client)
            _ = try await second.get("/dashboard")
            _ = try await second.signIn(token: tenant.token)
            #expect(try await second.get("/dashboard/usage").status == .ok)
            // Revoking the token ends its sessions at once (no cache to wait for).
            try await CompanyRepository(database: harness.database).revokeToken(tenant.tokenID, company: tenant.id)
            #expect(try await second.get("/dashboard/usage").status == .seeOther)
            let home = try await second.get("/dashboard")
            #expect(home.text.contains(#"name="token""#), "the sign-in form again")
        }
    }

    @Test func aSessionSeesOnlyItsOwnCompany() async throws {
        let mine = try await harness.company()
        let theirs = try await harness.company()
        let theirSurvey = try await SurveyRepository(database: harness.database).create(
            NewSurvey(name: "Their secret survey", interactionType: "x", questions: [NewQuestion(body: "Q?", language: try LanguageTag(parsing: "en"))]),
            company: theirs.id)
        try await harness.test(configuration: configuration()) { client in
            var browser = Browser(client: client)
            _ = try await browser.get("/dashboard")
            _ = try await browser.signIn(token: mine.token)
            let page = try await browser.get("/dashboard/surveys/\(theirSurvey.id)")
            #expect(page.status == .notFound)
            #expect(!page.text.contains("Their secret survey"))
            let requests = try await browser.get("/dashboard/requests?surveyId=\(theirSurvey.id)")
            #expect(!requests.text.contains("Their secret survey"))
            let overview = try await browser.get("/dashboard")
            #expect(!overview.text.contains("Their secret survey"))
        }
    }

    // MARK: Pages

    @Test func everyPageCarriesTheSecurityHeaders() async throws {
        let tenant = try await harness.company()
        try await harness.test(configuration: configuration()) { client in
            var browser = Browser(client: client)
            _ = try await browser.get("/dashboard")
            _ = try await browser.signIn(token: tenant.token)
            for path in ["/dashboard", "/dashboard/requests", "/dashboard/usage", "/dashboard/surveys/999999", "/dashboard/nothing"] {
                let page = try await browser.get(path)
                let csp = page.headers[HTTPField.Name("Content-Security-Policy")!] ?? ""
                #expect(csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "\(path)")
                #expect(!csp.contains("unsafe-inline"))
                #expect(page.headers[HTTPField.Name("X-Frame-Options")!] == "DENY")
                #expect(page.headers[HTTPField.Name("Referrer-Policy")!] == "same-origin")
                #expect(page.headers[.cacheControl] == "no-store", "\(path)")
                #expect(page.headers[.contentType] == "text/html; charset=utf-8", "\(path)")
                #expect(!page.text.contains("<script>") && !page.text.contains(" style="), "no inline script or style: \(path)")
            }
            let overview = try await browser.get("/dashboard")
            let stylesheet = try #require(overview.text.firstMatch(of: /href="(\/dashboard\/assets\/dashboard\.[0-9a-f]{12}\.css)"/)?.1)
            let asset = try await client.execute(uri: String(stylesheet), method: .get)
            #expect(asset.status == .ok)
            #expect(asset.headers[.cacheControl] == "public, max-age=31536000, immutable")
            #expect(asset.headers[.contentType] == "text/css; charset=utf-8")
            #expect(try await client.execute(uri: "/dashboard/assets/dashboard.css", method: .get).status == .notFound)
        }
    }

    @Test func theFiguresAreTheAPIsForTheSameParameters() async throws {
        var fixture = try await ReportFixture(harness: harness)
        let sales = try await fixture.addSurvey("Sales", interactionType: "sales")
        let care = try await fixture.addSurvey("Care", interactionType: "care")
        let now = Date()
        var rows: [ReportRow] = []
        for (index, score) in [10, 9, 9, 8, 7, 6, 3, 0, 10, 10, 5].enumerated() {
            rows.append(ReportRow(
                survey: index % 3 == 0 ? care : sales, createdAt: now.addingTimeInterval(-Double(index) * 86_400 * 4), score: score,
                segments: index % 2 == 0 ? ["vip"] : ["north", "vip"], language: index % 4 == 0 ? "fr" : "en"))
        }
        rows.append(ReportRow(survey: sales, createdAt: now.addingTimeInterval(-86_400), status: "failed"))
        rows.append(ReportRow(survey: sales, createdAt: now.addingTimeInterval(-3 * 86_400), score: nil, badReplies: 1))
        try await fixture.insert(rows)
        let tenant = fixture.tenant

        try await harness.test(configuration: configuration()) { client in
            var browser = Browser(client: client)
            _ = try await browser.get("/dashboard")
            _ = try await browser.signIn(token: tenant.token)
            for path in [
                "/dashboard", "/dashboard?period=90&interval=month", "/dashboard?segments=north&channel=SMS",
                "/dashboard/surveys/\(sales.id)?period=365", "/dashboard/surveys/\(care.id)?segments=vip,north&segmentMode=ANY",
            ] {
                let page = try await browser.get(path)
                #expect(page.status == .ok, "\(path): \(page.text.prefix(300))")
                let apiPath = try #require(page.text.firstMatch(of: /data-api="report">GET ([^<]+)</)?.1, "\(path)")
                let api = try await client.send(.get, String(apiPath).replacingOccurrences(of: "&amp;", with: "&"), headers: tenant.headers)
                #expect(api.status == .ok, "\(apiPath): \(api.text)")
                let nps = api.object["nps"] as? [String: Any] ?? [:]
                let statistics = api.object["responseStatistics"] as? [String: Any] ?? [:]
                func number(_ value: Any?) -> String {
                    guard let number = value as? NSNumber else { return "" }
                    return Tenths(rounding: number.doubleValue).description
                }
                #expect(page.metric("nps") == number(nps["score"]), "\(path)")
                #expect(page.metric("responses") == "\(statistics["totalResponses"] as? Int ?? -1)", "\(path)")
                #expect(page.metric("requests") == "\(statistics["totalRequests"] as? Int ?? -1)", "\(path)")
                #expect(page.metric("responseRate") == number(statistics["responseRate"]), "\(path)")
                #expect(page.textMetric("promoters") == "\(nps["promoters"] as? Int ?? -1)", "\(path)")
                #expect(page.textMetric("passives") == "\(nps["passives"] as? Int ?? -1)", "\(path)")
                #expect(page.textMetric("detractors") == "\(nps["detractors"] as? Int ?? -1)", "\(path)")
                // And the trend: the table's rows are the API's buckets.
                let trendPath = try #require(page.text.firstMatch(of: /data-api="trend">GET ([^<]+)</)?.1)
                let trend = try await client.send(.get, String(trendPath).replacingOccurrences(of: "&amp;", with: "&"), headers: tenant.headers)
                let buckets = trend.object["buckets"] as? [[String: Any]] ?? []
                let rows = page.text.matches(of: /<tr data-bucket><th scope="row">[^<]*<\/th><td data-metric="nps">([^<]*)<\/td><td data-metric="responses">(\d+)<\/td>/)
                #expect(rows.count == buckets.count, "\(path)")
                for (row, bucket) in zip(rows, buckets) {
                    let statistics = bucket["responseStatistics"] as? [String: Any] ?? [:]
                    #expect(String(row.2) == "\(statistics["totalResponses"] as? Int ?? -1)")
                }
            }
        }
    }

    @Test func whatCompaniesWroteIsShownAsTextNeverAsMarkup() async throws {
        let tenant = try await harness.company()
        let hostile = #"<img src=x onerror=alert(1)>"#
        let survey = try await SurveyRepository(database: harness.database).create(
            NewSurvey(
                name: hostile, interactionType: #"" onmouseover="alert(2)"#,
                questions: [NewQuestion(body: "</dd><script>alert(3)</script>", language: try LanguageTag(parsing: "en"))]),
            company: tenant.id)
        try await harness.test(configuration: configuration()) { client in
            var browser = Browser(client: client)
            _ = try await browser.get("/dashboard")
            _ = try await browser.signIn(token: tenant.token)
            for path in ["/dashboard", "/dashboard/surveys/\(survey.id)", "/dashboard/requests"] {
                let page = try await browser.get(path)
                #expect(page.status == .ok, "\(path)")
                #expect(!page.text.contains("<img src=x") && !page.text.contains("<script>alert"), "\(path)")
                #expect(!page.text.contains(#"" onmouseover="#), "\(path)")
                #expect(page.text.contains("&lt;img src=x onerror=alert(1)&gt;"), "\(path): the name, escaped")
            }
        }
    }

    @Test func usageMatchesTheAPI() async throws {
        let tenant = try await harness.company()
        try await harness.test(configuration: configuration()) { client in
            var browser = Browser(client: client)
            _ = try await browser.get("/dashboard")
            _ = try await browser.signIn(token: tenant.token)
            let page = try await browser.get("/dashboard/usage")
            #expect(page.status == .ok)
            let apiPath = try #require(page.text.firstMatch(of: /data-api="usage">GET ([^<]+)</)?.1)
            let api = try await client.send(.get, String(apiPath), headers: tenant.headers)
            #expect(page.metric("messages") == "\(api.object["messages"] as? Int ?? -1)")
            #expect(page.metric("segments") == "\(api.object["segments"] as? Int ?? -1)")
            #expect(page.textMetric("dailySmsCap") == "\(api.object["dailySmsCap"] as? Int ?? -1)")
            #expect(page.textMetric("smsQueuedToday") == "\(api.object["smsQueuedToday"] as? Int ?? -1)")
            for channel in ["emails", "calls", "callMinutes"] {
                #expect(page.textMetric(channel) == "\(api.object[channel] as? Int ?? -1)", "\(channel)")
            }
        }
    }

    @Test func badFiltersAreExplainedNotFatal() async throws {
        let tenant = try await harness.company()
        try await harness.test(configuration: configuration()) { client in
            var browser = Browser(client: client)
            _ = try await browser.get("/dashboard")
            _ = try await browser.signIn(token: tenant.token)
            let page = try await browser.get("/dashboard?period=7&channel=FAX&interval=day&segmentMode=SOME")
            #expect(page.status == .ok)
            for message in ["Choose 30, 90 or 365 days", "Unknown channel", "Choose week or month", "Choose ALL or ANY"] {
                #expect(page.text.contains(message), "\(message)")
            }
            let reversed = try await browser.get("/dashboard?period=custom&from=2026-05-01&to=2026-04-01")
            #expect(reversed.text.contains("The start must not be after the end"))
            let tooLong = try await browser.get("/dashboard?period=custom&from=2001-01-01&to=2026-04-01")
            #expect(tooLong.status == .ok)
            #expect(tooLong.text.contains("5 years"))
        }
    }
}

/// A browser's worth of state over the router test client: its cookies.
struct Browser {
    let client: any TestClientProtocol
    var extraHeaders: HTTPFields = [:]
    var cookies: [String: String] = [:]

    init(client: any TestClientProtocol, extraHeaders: HTTPFields = [:]) {
        self.client = client
        self.extraHeaders = extraHeaders
    }

    var cookieHeader: HTTPFields {
        var headers = extraHeaders
        if !cookies.isEmpty { headers[.cookie] = cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ") }
        return headers
    }

    mutating func get(_ path: String) async throws -> TestResponse {
        let response = try await client.execute(uri: path, method: .get, headers: cookieHeader)
        keep(response)
        return response
    }

    mutating func post(_ path: String, form: String) async throws -> TestResponse {
        var headers = cookieHeader
        headers[.contentType] = "application/x-www-form-urlencoded"
        let response = try await client.execute(uri: path, method: .post, headers: headers, body: ByteBuffer(string: form))
        keep(response)
        return response
    }

    /// Posts the sign-in form with the token its page carried.
    mutating func signIn(token: String) async throws -> TestResponse {
        let csrf = cookies["surveyd_sign_in"] ?? ""
        let encoded = token.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
        return try await post("/dashboard/sign-in", form: "csrf=\(csrf)&token=\(encoded)")
    }

    private mutating func keep(_ response: TestResponse) {
        for header in response.headers[values: .setCookie] {
            let pair = header.split(separator: ";")[0]
            guard let equals = pair.firstIndex(of: "=") else { continue }
            let name = String(pair[..<equals]), value = String(pair[pair.index(after: equals)...])
            if value.isEmpty || header.contains("Max-Age=0") { cookies[name] = nil } else { cookies[name] = value }
        }
    }
}

extension TestResponse {
    /// The `data-value` of the element marked `data-metric="name"`.
    func metric(_ name: String) -> String? {
        guard let range = text.range(of: #"data-metric="\#(name)" data-value=""#) else { return nil }
        return String(text[range.upperBound...].prefix { $0 != "\"" })
    }

    /// The text of the first element marked `data-metric="name"`.
    func textMetric(_ name: String) -> String? {
        guard let range = text.range(of: #"data-metric="\#(name)">"#) else { return nil }
        return String(text[range.upperBound...].prefix { $0 != "<" })
    }
}
