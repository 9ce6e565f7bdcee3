import Foundation
import Postgres
import SurveyStorage
import TestSupport
import Testing

@Suite struct MigratorTests {
    func scratch(_ label: String) async throws -> PostgresConnection {
        try await TestDatabase.connect(url: try await TestDatabase.scratchDatabase(label), applicationName: "surveyd-migrate")
    }

    func tables(_ connection: PostgresConnection) async throws -> [String] {
        try await connection.query("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
            .map { try $0.decode(String.self) }
    }

    @Test func appliesTheRepositoryMigrationsOnceAndThenIsANoOp() async throws {
        let connection = try await scratch("migrate")
        let migrator = try Migrator(directory: TestDatabase.sqlDirectory)
        #expect(!migrator.migrations.isEmpty)
        let applied = try await migrator.migrate(on: connection, logger: TestDatabase.logger)
        #expect(applied == migrator.migrations.map(\.name))
        #expect(try await tables(connection).contains("schema_migrations"))
        #expect(try await tables(connection).contains("survey_requests"))
        #expect(try await migrator.migrate(on: connection, logger: TestDatabase.logger) == [])
        #expect(try await migrator.isCurrent(on: connection))
        await connection.close()
    }

    @Test func refusesAnEditedMigration() async throws {
        let connection = try await scratch("edited")
        let original = Migrator.Migration(version: 1, name: "0001_things", sql: "CREATE TABLE things (id int)")
        try await Migrator(migrations: [original]).migrate(on: connection, logger: TestDatabase.logger)
        var edited = original
        edited.sql += ", name text"
        let error = await #expect(throws: Migrator.MigrationError.self) {
            try await Migrator(migrations: [edited]).migrate(on: connection, logger: TestDatabase.logger)
        }
        guard case .changedAfterApplied(let file, _, _) = error else {
            Issue.record("unexpected \(String(describing: error))")
            return
        }
        #expect(file == "0001_things.sql")
        #expect(error?.description.contains("edited after it was applied") == true)
        await connection.close()
    }

    @Test func refusesADatabaseMigratedByANewerBuild() async throws {
        let connection = try await scratch("newer")
        let one = Migrator.Migration(version: 1, name: "0001_a", sql: "CREATE TABLE a (id int)")
        let two = Migrator.Migration(version: 2, name: "0002_b", sql: "CREATE TABLE b (id int)")
        try await Migrator(migrations: [one, two]).migrate(on: connection, logger: TestDatabase.logger)
        await #expect(throws: Migrator.MigrationError.unknownAppliedVersion(2, name: "0002_b")) {
            try await Migrator(migrations: [one]).migrate(on: connection, logger: TestDatabase.logger)
        }
        await connection.close()
    }

    @Test func aFailingMigrationLeavesNothingBehind() async throws {
        let connection = try await scratch("failing")
        let good = Migrator.Migration(version: 1, name: "0001_good", sql: "CREATE TABLE good (id int)")
        let bad = Migrator.Migration(version: 2, name: "0002_bad", sql: "CREATE TABLE bad (id int); SELECT 1 / 0")
        await #expect(throws: PostgresError.self) {
            try await Migrator(migrations: [good, bad]).migrate(on: connection, logger: TestDatabase.logger)
        }
        #expect(try await tables(connection) == [])
        await connection.close()
    }

    @Test func concurrentMigratorsApplyOnce() async throws {
        let url = try await TestDatabase.scratchDatabase("concurrent")
        let migrator = try Migrator(directory: TestDatabase.sqlDirectory)
        let results = try await withThrowingTaskGroup(of: [String].self) { group in
            for _ in 0..<3 {
                group.addTask {
                    let connection = try await TestDatabase.connect(url: url, applicationName: "surveyd-migrate")
                    defer { Task { await connection.close() } }
                    return try await migrator.migrate(on: connection, logger: TestDatabase.logger)
                }
            }
            var all: [[String]] = []
            for try await result in group { all.append(result) }
            return all
        }
        #expect(results.filter { !$0.isEmpty }.count == 1)
    }

    @Test func rejectsBadFileNamesAndDuplicateVersions() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "SELECT 1".write(to: directory.appendingPathComponent("0001_a.sql"), atomically: true, encoding: .utf8)
        try "SELECT 1".write(to: directory.appendingPathComponent("0001_b.sql"), atomically: true, encoding: .utf8)
        #expect(throws: Migrator.MigrationError.duplicateVersion(1)) { try Migrator(directory: directory.path) }
        try FileManager.default.removeItem(at: directory.appendingPathComponent("0001_b.sql"))
        try "SELECT 1".write(to: directory.appendingPathComponent("2_typo.sql"), atomically: true, encoding: .utf8)
        #expect(throws: Migrator.MigrationError.badFileName("2_typo.sql")) { try Migrator(directory: directory.path) }
        #expect(throws: Migrator.MigrationError.self) { try Migrator(directory: "/nonexistent/sql") }
    }
}
