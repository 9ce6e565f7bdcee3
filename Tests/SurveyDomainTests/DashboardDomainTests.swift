import Foundation
import SurveyDomain
import Testing

@Suite struct DashboardFiltersTests {
    @Test func defaultsAreTheLast30DaysTodayIncludedByWeek() throws {
        let filters = try DashboardFilters(parameters: [])
        #expect(filters.days(today: "2026-12-07") == ("2026-11-08", "2026-12-07"))
        #expect(filters.trendInterval(today: "2026-12-07") == .week)
        #expect(filters.queryItems.isEmpty, "the default view's URL is bare")
        let parameters = filters.reportParameters(timeZone: "Europe/Brussels", today: "2026-12-07", trend: true)
        #expect(parameters.startDate == "2026-11-08" && parameters.endDate == "2026-12-07")
        #expect(parameters.timezone == "Europe/Brussels" && parameters.interval == "week" && parameters.segmentMode == "ALL")
    }

    @Test func aYearIsByMonthAcrossALeapDay() throws {
        let filters = try DashboardFilters(parameters: [("period", "365")])
        #expect(filters.days(today: "2028-03-01") == ("2027-03-03", "2028-03-01"))
        #expect(filters.trendInterval(today: "2028-03-01") == .month)
    }

    @Test func aViewSurvivesItsOwnURL() throws {
        let parameters = [
            ("period", "custom"), ("from", "2026-01-05"), ("to", "2026-03-31"), ("channel", "SMS"), ("segments", "vip, north"),
            ("segments", "vip"), ("segmentMode", "ANY"), ("interval", "month"), ("unknown", "ignored"),
        ]
        let filters = try DashboardFilters(parameters: parameters)
        #expect(filters.period == .range(from: "2026-01-05", to: "2026-03-31"))
        #expect(filters.segments == ["vip", "north"])
        #expect(try DashboardFilters(parameters: filters.queryItems) == filters)
    }

    @Test func badValuesAreReportedAndTheRestKept() {
        let parameters = [
            ("period", "7"), ("channel", "FAX"), ("segmentMode", "SOME"), ("interval", "day"), ("segments", "vip"),
        ]
        #expect(throws: DashboardFiltersError.self) { try DashboardFilters(parameters: parameters) }
        do {
            _ = try DashboardFilters(parameters: parameters)
        } catch {
            #expect(Set(error.problems.map(\.parameter)) == ["period", "channel", "segmentMode", "interval"])
            #expect(error.usable.segments == ["vip"])
            #expect(error.usable.period == .lastDays(30))
        }
        for (from, to) in [("2026-02-30", "2026-03-01"), ("2026-3-1", "2026-03-02"), ("", "2026-03-01"), ("2026-05-01", "2026-04-01")] {
            #expect(throws: DashboardFiltersError.self, "\(from)–\(to)") {
                try DashboardFilters(parameters: [("period", "custom"), ("from", from), ("to", to)])
            }
        }
    }

    @Test func todayIsTheCompanysDate() {
        // 23:30 UTC on 6 December is already 7 December in Brussels.
        let now = ISO8601DateFormatter().date(from: "2026-12-06T23:30:00Z")!
        #expect(DashboardFilters.today(in: TimeZone(identifier: "Europe/Brussels")!, now: now) == "2026-12-07")
        #expect(DashboardFilters.today(in: TimeZone(identifier: "UTC")!, now: now) == "2026-12-06")
    }
}

@Suite struct DashboardSessionSecretTests {
    @Test func onlyCookiesOfOurShapeAreLookedUp() {
        let secret = DashboardSessionSecret.generate()
        #expect(DashboardSessionSecret(cookie: secret.value) == secret)
        for bad in ["", String(repeating: "a", count: 42), String(repeating: "a", count: 44), String(repeating: "=", count: 43), "a b" + String(repeating: "c", count: 40)] {
            #expect(DashboardSessionSecret(cookie: bad) == nil, "\(bad)")
        }
        #expect(!"\(secret)".contains(secret.value), "its description redacts it")
        #expect(secret.hash.count == 32 && secret.hash != Data(secret.value.utf8))
    }

    @Test func theCSRFTokenIsTheSessionsOwn() {
        let one = DashboardSessionSecret.generate()
        let other = DashboardSessionSecret.generate()
        #expect(one.isValidCSRFToken(one.csrfToken))
        #expect(!one.isValidCSRFToken(other.csrfToken))
        #expect(!one.isValidCSRFToken(""))
        #expect(!one.isValidCSRFToken(String(one.csrfToken.dropLast())))
        #expect(!one.csrfToken.contains(one.value))
    }
}
