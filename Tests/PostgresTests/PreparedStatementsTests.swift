import Postgres
import Synchronization
import TestSupport
import Testing

@testable import Postgres

@Suite struct PreparedStatementsTests {
    @Test func aTextIsPreparedOnceThenExecutedByName() {
        var statements = PreparedStatements(capacity: 4)
        #expect(statements.plan(for: "SELECT 1") == .prepare(name: "_p1"))
        statements.prepared("SELECT 1", as: "_p1", succeeded: true)
        #expect(statements.plan(for: "SELECT 1") == .execute(name: "_p1"))
        #expect(statements.plan(for: "SELECT 2") == .prepare(name: "_p2"))
    }

    /// The same new text twice in one pipeline: prepared once, executed twice.
    @Test func aTextTwiceInOnePipelineIsPreparedOnce() {
        var statements = PreparedStatements(capacity: 4)
        #expect(statements.plan(for: "SELECT 1") == .prepare(name: "_p1"))
        #expect(statements.plan(for: "SELECT 1") == .execute(name: "_p1"))
        statements.prepared("SELECT 1", as: "_p1", succeeded: true)
        #expect(statements.plan(for: "SELECT 2") == .prepare(name: "_p2"))
        // Had the prepare failed, the name would be free again and the text unknown.
        var failing = PreparedStatements(capacity: 4)
        _ = failing.plan(for: "SELECT 1")
        failing.prepared("SELECT 1", as: "_p1", succeeded: false)
        #expect(failing.plan(for: "SELECT 1") == .prepare(name: "_p1"))
    }

    @Test func aFailedPrepareFreesItsNameAndTheTextIsPreparedAgainNextTime() {
        var statements = PreparedStatements(capacity: 1)
        #expect(statements.plan(for: "SELECT 1") == .prepare(name: "_p1"))
        statements.prepared("SELECT 1", as: "_p1", succeeded: false)
        #expect(statements.count == 0)
        #expect(statements.plan(for: "SELECT 1") == .prepare(name: "_p1"))
    }

    @Test func pastTheCapacityNewTextsRunUnnamedAndOldOnesStayPrepared() {
        var statements = PreparedStatements(capacity: 2)
        for sql in ["a", "b"] {
            guard case .prepare(let name) = statements.plan(for: sql) else { Issue.record("not prepared"); return }
            statements.prepared(sql, as: name, succeeded: true)
        }
        #expect(statements.plan(for: "c") == .unnamed)
        #expect(statements.plan(for: "a") == .execute(name: "_p1"))
    }

    @Test func aForgottenStatementGetsANewNameAndTheOldOneStillCounts() {
        func prepareAll(_ texts: [String], capacity: Int) -> PreparedStatements {
            var statements = PreparedStatements(capacity: capacity)
            for sql in texts {
                guard case .prepare(let name) = statements.plan(for: sql) else { continue }
                statements.prepared(sql, as: name, succeeded: true)
            }
            return statements
        }
        var roomy = prepareAll(["a", "b"], capacity: 3)
        roomy.forget("a")
        #expect(roomy.count == 1)
        #expect(roomy.plan(for: "a") == .prepare(name: "_p3"))

        var full = prepareAll(["a", "b"], capacity: 2)
        full.forget("a")
        #expect(full.plan(for: "a") == .unnamed, "the forgotten name stays allocated on the server")
    }

    // MARK: - Against the server

    func client() throws -> PostgresClient {
        var configuration = PostgresClient.Configuration(
            connection: .init(url: try TestDatabase.url(), applicationName: "prepared-\(UInt32.random(in: 0...UInt32.max))"))
        configuration.maximumConnections = 1
        return PostgresClient(configuration: configuration, logger: TestDatabase.logger)
    }

    func preparedTexts(_ connection: PostgresConnection) async throws -> [String] {
        try await connection.query(PostgresQuery(unsafeSQL: "SELECT statement FROM pg_prepared_statements ORDER BY name"))
            .map { try $0.decode(String.self) }
    }

    @Test func aRepeatedStatementIsPreparedOnceOnTheServerAndUnsafeTextsAreNot() async throws {
        try await client().withConnection { connection in
            for value in 1...3 {
                let row = try await connection.query("SELECT \(value)::int + 1 AS n").one()
                #expect(try row.decode(Int.self) == value + 1)
            }
            _ = try await connection.query(PostgresQuery(unsafeSQL: "SELECT 'built at run time'"))
            _ = try await connection.pipeline(["SELECT \(1)::int + 1 AS n", "SELECT \(2)::int * 2 AS n"])
            let texts = try await preparedTexts(connection)
            #expect(texts == ["SELECT $1::int + 1 AS n", "SELECT $1::int * 2 AS n"])
        }
    }

    @Test func aNewTextTwiceInOnePipelineIsPreparedOnceAndRunsTwice() async throws {
        try await client().withConnection { connection in
            let results = try await connection.pipeline(["SELECT \(3)::int * 3 AS n", "SELECT \(4)::int * 3 AS n"])
            let values = try results.map { try $0.one().decode(Int.self) }
            #expect(values == [9, 12])
            #expect(try await preparedTexts(connection) == ["SELECT $1::int * 3 AS n"])
        }
    }

    @Test func aPrepareSkippedByAnEarlierErrorInThePipelineIsPreparedOnTheNextCall() async throws {
        try await client().withConnection { connection in
            await #expect(throws: PostgresError.self) {
                try await connection.pipeline(["SELECT 1 / \(0)", "SELECT \(5)::int AS skipped"])
            }
            let afterError = try await preparedTexts(connection)
            #expect(afterError == ["SELECT 1 / $1"])
            let skipped = try await connection.query("SELECT \(5)::int AS skipped").one().decode(Int.self)
            #expect(skipped == 5)
            let afterRetry = try await preparedTexts(connection)
            #expect(afterRetry == ["SELECT 1 / $1", "SELECT $1::int AS skipped"])
        }
    }

    @Test func aStatementPreparedInsideARolledBackTransactionStaysUsable() async throws {
        try await client().withConnection { connection in
            try await connection.simpleQuery("BEGIN")
            _ = try await connection.query("SELECT \(1)::int AS in_transaction")
            try await connection.simpleQuery("ROLLBACK")
            let afterRollback = try await connection.query("SELECT \(7)::int AS in_transaction").one().decode(Int.self)
            #expect(afterRollback == 7)
        }
    }

    @Test func aColumnWhoseTypeChangesUnderAPreparedStatementIsReplannedOutsideATransaction() async throws {
        let table = "prepared_\(UInt32.random(in: 0...UInt32.max))"
        try await client().withConnection { connection in
            try await connection.simpleQuery("CREATE TABLE \(table) (n int); INSERT INTO \(table) VALUES (1)")
            // The table name is the test's own, so its text can be declared fixed.
            let select = PostgresQuery(unsafeSQL: "SELECT * FROM \(table) WHERE $1", bindings: ["true"], preparable: true)
            let asInt = try await connection.query(select).one().decode(Int.self)
            #expect(asInt == 1)
            try await connection.simpleQuery("ALTER TABLE \(table) ALTER COLUMN n TYPE text")
            // On its own, the stale plan is replaced and the statement runs again.
            let asText = try await connection.query(select).one().decode(String.self)
            #expect(asText == "1")

            // Inside a transaction the error must reach the caller (the transaction is
            // aborted), and the next call after it works.
            try await connection.simpleQuery("ALTER TABLE \(table) ALTER COLUMN n TYPE bigint USING n::bigint")
            try await connection.simpleQuery("BEGIN")
            let error = await #expect(throws: PostgresError.self) { try await connection.query(select) }
            #expect(error?.sqlState == "0A000")
            try await connection.simpleQuery("ROLLBACK")
            let asBigint = try await connection.query(select).one().decode(Int64.self)
            #expect(asBigint == Int64(1))
            try await connection.simpleQuery("DROP TABLE \(table)")
        }
    }

    @Test func statementsDeallocatedBehindTheClientsBackArePreparedAgain() async throws {
        try await client().withConnection { connection in
            let select: PostgresQuery = "SELECT \(3)::int AS deallocated"
            _ = try await connection.query(select)
            try await connection.simpleQuery("DEALLOCATE ALL")
            let value = try await connection.query(select).one().decode(Int.self)
            #expect(value == 3)
        }
    }

    @Test func aCopyIsRefusedAndTheConnectionNotReused() async throws {
        try await client().withConnection { connection in
            let error = await #expect(throws: PostgresError.self) { try await connection.query("COPY (SELECT 1) TO STDOUT") }
            #expect(error?.code == .protocolViolation)
            #expect(!connection.isReusable)
        }
    }

    @Test func aPooledTransactionRunsAgainWhenItsStatementWentStale() async throws {
        let client = try client()
        let table = "prepared_\(UInt32.random(in: 0...UInt32.max))"
        let select = PostgresQuery(unsafeSQL: "SELECT n FROM \(table)", preparable: true)
        try await client.withConnection { connection in
            try await connection.simpleQuery("CREATE TABLE \(table) (n int); INSERT INTO \(table) VALUES (1)")
            _ = try await connection.query(select)
            try await connection.simpleQuery("ALTER TABLE \(table) ALTER COLUMN n TYPE text")
        }
        let attempts = Mutex(0)
        let value = try await client.withTransaction(retryingIfLost: true) { connection in
            attempts.withLock { $0 += 1 }
            return try await connection.query(select).one().decode(String.self)
        }
        #expect(value == "1")
        #expect(attempts.withLock { $0 } == 2, "the first run met the stale statement, the second prepared it again")
        try await client.withConnection { try await $0.simpleQuery("DROP TABLE \(table)") }
    }
}
