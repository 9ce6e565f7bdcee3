import Foundation
import Postgres
import TestSupport
import Testing

/// Issue 12: one connection used by two tasks at once must stop the program loudly, not
/// race libpq. Exit tests: the check ends the process it runs in.
@Suite struct ExclusiveUseTests {
    @Test func twoStatementsAtOnceStopTheProgram() async throws {
        let result = try await #require(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let connection = try await TestDatabase.connect(url: try TestDatabase.url())
            // The pool never does this: a connection shared by two tasks behind its back.
            async let first = connection.query("SELECT pg_sleep(0.5)")
            async let second = connection.query("SELECT 1")
            _ = try await (first, second)
        }
        // Stopped by the check, not by some other failure of the child.
        #expect(String(decoding: result.standardErrorContent, as: UTF8.self).contains("used by two tasks at once"))
    }

    @Test func aStatementDuringAWaitForNotificationsStopsTheProgram() async throws {
        let result = try await #require(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let connection = try await TestDatabase.connect(url: try TestDatabase.url())
            async let waiting = connection.notifications(timeout: .seconds(1))
            try await Task.sleep(for: .milliseconds(100))
            _ = try await connection.query("SELECT 1")
            _ = try await waiting
        }
        #expect(String(decoding: result.standardErrorContent, as: UTF8.self).contains(
            "a statement while a wait for notifications is running"))
    }

    /// One after another, as a lease is used, is fine.
    @Test func oneAfterAnotherIsFine() async throws {
        let connection = try await TestDatabase.connect(url: try TestDatabase.url())
        for value in 0..<3 {
            #expect(try await connection.query("SELECT \(value)::int").one().decode(Int.self) == value)
        }
        _ = try await connection.notifications(timeout: .milliseconds(1))
        try await connection.simpleQuery("SELECT 1")
        await connection.close()
    }
}
