import Postgres
import SurveyDomain
import SurveyStorage
import TestSupport
import Testing

@Suite struct DatabaseSettingsTests {
    /// Issue 12: whole seconds only were converted, so 0.5 s became `statement_timeout = 0`,
    /// which PostgreSQL reads as no timeout at all.
    @Test(arguments: [(Duration.milliseconds(500), "500ms"), (.milliseconds(1500), "1500ms"), (.seconds(30), "30s")])
    func statementTimeoutKeepsItsFraction(_ timeout: Duration, _ shown: String) async throws {
        // The shared test database is migrated by the first `application()`.
        _ = try await TestDatabase.application()
        let url = try TestDatabase.url()
        let pool = Database.applicationPool(
            url: url, applicationName: "tests-timeouts", maximumConnections: 1, statementTimeout: timeout, logger: TestDatabase.logger)
        let setting = try await pool.withConnection { try await $0.query("SHOW statement_timeout").one().decode(String.self) }
        await pool.shutDown()
        #expect(setting == shown)
    }

    @Test func roundedUpMilliseconds() {
        #expect(Duration.milliseconds(500).roundedUpMilliseconds == 500)
        #expect(Duration.nanoseconds(1).roundedUpMilliseconds == 1)
        #expect(Duration.seconds(2).roundedUpMilliseconds == 2000)
        #expect(Duration.zero.roundedUpMilliseconds == 0)
    }
}
