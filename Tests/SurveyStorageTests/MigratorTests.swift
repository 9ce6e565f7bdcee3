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

/// `MIGRATION_DATABASE_URL` may log in as the schema's owner (CREATEROLE, not superuser).
/// Row-level security is forced even on owners and function privileges are their owners':
/// the reports migration must still backfill every tenant's rows and lock its functions.
@Suite struct OwnerMigratorTests {
    @Test func reportsMigrationByTheSchemaOwnerBackfillsAndLocksItsFunctions() async throws {
        let url = try await TestDatabase.scratchDatabase("owner")
        let role = "migrator_\(UInt32.random(in: 0...UInt32.max))"
        let database = String(url.split(separator: "/").last!.split(separator: "?").first!)
        let admin = try await TestDatabase.connect(url: url)
        try await admin.simpleQuery(
            """
            CREATE ROLE \(role) LOGIN CREATEROLE;
            ALTER DATABASE \(database) OWNER TO \(role);
            ALTER SCHEMA public OWNER TO \(role);
            """)
        let ownerURL = url.replacingOccurrences(of: "postgres@", with: "\(role)@")
        let owner = try await TestDatabase.connect(url: ownerURL, applicationName: "surveyd-migrate")
        let all = try Migrator(directory: TestDatabase.sqlDirectory).migrations
        _ = try await Migrator(migrations: all.filter { $0.version < 3 }).migrate(on: owner, logger: TestDatabase.logger)
        // History from before the reports existed, as the superuser writes it.
        try await admin.simpleQuery(
            """
            INSERT INTO companies (company_id, name) VALUES (1, 'a'), (2, 'b');
            INSERT INTO surveys (company_id, survey_id, name, interaction_type) VALUES (1, 1, 's', 'x'), (2, 2, 't', 'y');
            INSERT INTO questions (company_id, question_id, survey_id, body, language) VALUES (1, 1, 1, 'q', 'en'), (2, 2, 2, 'q', 'en');
            INSERT INTO survey_requests (company_id, survey_id, question_id, channel, destination_hash, created_at, status, score)
            SELECT 1 + i % 2, 1 + i % 2, 1 + i % 2, 'SMS', decode(md5(i::text) || md5(i::text), 'hex'),
                   now() - i * interval '1 day', 'delivered', i % 11
              FROM generate_series(1, 60) AS i;
            """)
        _ = try await Migrator(migrations: all).migrate(on: owner, logger: TestDatabase.logger)
        await owner.close()

        let rolled = try await admin.query(
            "SELECT detail, sum(requests)::int, sum(promoters)::int FROM report_rollups WHERE grain = 'month' GROUP BY detail ORDER BY detail"
        ).map { try $0.decode((String, Int, Int).self) }
        let promoters = try await admin.query("SELECT count(*)::int FROM survey_requests WHERE score >= 9").one().decode(Int.self)
        #expect(rolled.map(\.0) == ["full", "language", "segments", "survey"])
        #expect(rolled.allSatisfy { $0.1 == 60 && $0.2 == promoters }, "\(rolled)")
        // Row-level security is forced again after the backfill.
        #expect(try await admin.query("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'survey_requests'").one().decode(Bool.self))
        for function in ["compact_report_rollups(integer)", "record_report_changes()", "authenticate_api_token(bytea)", "api_token_company(bigint)"] {
            let open = try await admin.query(
                "SELECT coalesce(bool_or(a.grantee = 0), false) FROM pg_proc p, aclexplode(p.proacl) a WHERE p.oid = \(function)::regprocedure"
            ).one().decode(Bool.self)
            #expect(!open, "\(function) is executable by PUBLIC")
        }
        #expect(try await admin.query("SELECT has_function_privilege('survey_worker', 'compact_report_rollups(integer)', 'EXECUTE')").one().decode(Bool.self))
        await admin.close()
    }
}
