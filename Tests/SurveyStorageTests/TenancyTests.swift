import Foundation
import Postgres
import SurveyDomain
import SurveyStorage
import TestSupport
import Testing

/// Row-level security is the floor under the bearer tokens: even a query that forgot its
/// `WHERE company_id` cannot see or write another company's rows.
@Suite struct TenancyTests {
    let database: Database
    let superuser: PostgresClient

    init() async throws {
        database = try await TestDatabase.application()
        superuser = try await TestDatabase.superuser()
    }

    func newCompany() async throws -> CompanyID {
        try await CompanyRepository(database: database).create(name: "Tenant \(UInt32.random(in: 0...UInt32.max))", settings: .alwaysOpen).0.id
    }

    /// Tables keyed by a phone's hash rather than a company: replies and delivery callbacks
    /// do not say which company they are for. Citus reference tables; RLS on, a policy for
    /// the routing functions' owner and one for the worker, none for the API.
    static let routingTables: Set<String> = ["open_surveys", "provider_messages"]

    /// Every table with a `company_id` column has RLS enabled and forced, with a policy.
    @Test func catalogAudit() async throws {
        let rows = try await superuser.withConnection { connection in
            try await connection.query(
                """
                SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
                       (SELECT count(*)::int FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation'),
                       (SELECT count(*)::int FROM pg_policy p WHERE p.polrelid = c.oid)
                  FROM pg_class c
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
                   AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'company_id' AND NOT a.attisdropped)
                 ORDER BY 1
                """)
        }
        let tables = try rows.map { try $0.decode((String, Bool, Bool, Int, Int).self) }
        #expect(Set(tables.map(\.0)).isSuperset(of: ["api_tokens", "companies", "questions", "surveys", "survey_requests", "sms_jobs"]))
        for (table, enabled, forced, tenantPolicies, policies) in tables {
            #expect(enabled, "\(table) has row-level security disabled")
            #expect(forced, "\(table) does not force row-level security")
            if Self.routingTables.contains(table) {
                #expect(policies == 2, "\(table)")
            } else {
                #expect(tenantPolicies == 1, "\(table) lacks the tenant_isolation policy")
            }
        }
        // company_id is bigint everywhere, and leads every primary key.
        let keys = try await superuser.withConnection { connection in
            try await connection.query(
                """
                SELECT c.relname::text, format_type(a.atttypid, a.atttypmod),
                       (SELECT a2.attname::text FROM pg_constraint k JOIN pg_attribute a2
                          ON a2.attrelid = k.conrelid AND a2.attnum = k.conkey[1]
                         WHERE k.conrelid = c.oid AND k.contype = 'p')
                  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'company_id'
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relkind = 'r'
                """)
        }
        for row in keys {
            let (table, type, leading) = try row.decode((String, String, String).self)
            #expect(type == "bigint", "\(table)")
            if !Self.routingTables.contains(table) { #expect(leading == "company_id", "\(table)") }
        }
        // ...and every unique constraint and foreign key of a tenant table.
        let constraints = try await superuser.withConnection { connection in
            try await connection.query(
                """
                SELECT c.relname::text, k.conname::text, a.attname::text
                  FROM pg_constraint k
                  JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
                  JOIN pg_class c ON c.oid = k.conrelid
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND k.contype IN ('u', 'f', 'p')
                   AND EXISTS (SELECT 1 FROM pg_attribute a3 WHERE a3.attrelid = c.oid AND a3.attname = 'company_id')
                """)
        }
        #expect(!constraints.isEmpty)
        for row in constraints {
            let (table, name, first) = try row.decode((String, String, String).self)
            if Self.routingTables.contains(table) { continue }
            #expect(first == "company_id", "\(name) does not lead with company_id")
        }
    }

    @Test func theApplicationRoleIsUnprivileged() async throws {
        let row = try await superuser.withConnection { connection in
            try await connection.query(
                """
                SELECT rolcanlogin, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb,
                       (SELECT count(*)::int FROM pg_class WHERE relowner = r.oid),
                       (SELECT count(*)::int FROM pg_proc WHERE proowner = r.oid)
                  FROM pg_roles r WHERE rolname = 'survey_app'
                """
            ).one()
        }
        let (login, superuserFlag, bypass, createRole, createDB, ownedRelations, ownedFunctions) = try row.decode(
            (Bool, Bool, Bool, Bool, Bool, Int, Int).self)
        #expect(!login && !superuserFlag && !bypass && !createRole && !createDB)
        #expect(ownedRelations == 0 && ownedFunctions == 0)
    }

    @Test func theApplicationPoolRunsAsSurveyApp() async throws {
        let (user, session) = try await database.client.withConnection { connection in
            try await connection.query("SELECT current_user::text, session_user::text").one().decode((String, String).self)
        }
        #expect(user == "survey_app")
        #expect(session != "survey_app")
    }

    @Test func withoutATenantNothingIsVisible() async throws {
        let company = try await newCompany()
        _ = try await SurveyRepository(database: database).create(
            NewSurvey(name: "s", interactionType: "t", questions: [.init(body: "q", language: try LanguageTag(parsing: "en"))]),
            company: company)
        try await database.client.withConnection { connection in
            for table in ["companies", "api_tokens", "surveys", "questions", "survey_requests", "sms_jobs", "idempotency_keys"] {
                let count = try await connection.query("SELECT count(*)::int FROM \(identifier: table)").one().decode(Int.self)
                #expect(count == 0, "\(table) shows rows with no tenant set")
            }
        }
        // The superuser sees them: the rows are there.
        #expect(
            try await superuser.withConnection { connection in
                try await connection.query("SELECT count(*)::int FROM surveys WHERE company_id = \(company)").one().decode(Int.self)
            } == 1)
    }

    @Test func aTenantSeesOnlyItsOwnRowsAndCannotWriteAnothers() async throws {
        let mine = try await newCompany()
        let theirs = try await newCompany()
        let surveys = SurveyRepository(database: database)
        let question = NewQuestion(body: "q", language: try LanguageTag(parsing: "en"))
        let their = try await surveys.create(NewSurvey(name: "theirs", interactionType: "t", questions: [question]), company: theirs)

        try await database.withTenant(mine) { connection in
            // No WHERE clause at all: still only this company's rows.
            let names = try await connection.query("SELECT name FROM surveys").map { try $0.decode(String.self) }
            #expect(!names.contains("theirs"))
            let updated = try await connection.query("DELETE FROM surveys WHERE survey_id = \(their.id)")
            #expect(updated.affectedRows == 0)
        }
        let error = await #expect(throws: PostgresError.self) {
            try await database.withTenant(mine) { connection in
                try await connection.query(
                    "INSERT INTO surveys (company_id, name, interaction_type) VALUES (\(theirs), \("sneaky"), \("t"))")
            }
        }
        #expect(error?.sqlState == PostgresError.SQLState.insufficientPrivilege)
        // The same for every other tenant table the application may write.
        let writes: [PostgresQuery] = [
            "INSERT INTO questions (company_id, survey_id, body, language) VALUES (\(theirs), \(their.id), \("q"), \("de"))",
            "INSERT INTO api_tokens (company_id, token_hash, token_hint) VALUES (\(theirs), \(Data(count: 32)), \("x"))",
            "INSERT INTO companies (company_id, name) VALUES (\(Int64.max - 1), \("forged"))",
        ]
        for write in writes {
            let error = await #expect(throws: PostgresError.self) {
                try await database.withTenant(mine) { try await $0.query(write) }
            }
            #expect(error?.sqlState == PostgresError.SQLState.insufficientPrivilege, "\(write.sql)")
        }
        #expect(try await surveys.find(their.id, company: theirs) == their)
    }

    /// A pool of one connection, so the next borrower is sure to get the same one.
    func singleConnection(named name: String) throws -> (PostgresClient, Database) {
        var configuration = PostgresClient.Configuration(connection: .init(url: try TestDatabase.url(), applicationName: name))
        configuration.maximumConnections = 1
        let client = PostgresClient(configuration: configuration, logger: TestDatabase.logger)
        return (client, Database(client: client))
    }

    @Test func theTenantSettingEndsWithItsTransaction() async throws {
        let (client, scoped) = try singleConnection(named: "tenant-leak-test")
        let company = try await newCompany()
        let inside = try await scoped.withTenant(company) { connection in
            try await connection.query("SELECT current_setting('app.company_id', true)").one().decode(String?.self)
        }
        #expect(inside == String(company.rawValue))
        // The same (only) pooled connection, next borrower: nothing left behind.
        let after = try await client.withConnection { connection in
            try await connection.query("SELECT current_setting('app.company_id', true)").one().decode(String?.self)
        }
        #expect(after == nil || after == "")
    }

    /// A request's statements get what is left of its deadline once a connection is leased,
    /// not what was left before it waited for one.
    @Test func aTenantTransactionsTimeoutCountsTheWaitForAConnection() async throws {
        let (client, scoped) = try singleConnection(named: "deadline-wait-test")
        let company = try await newCompany()
        let (held, holding) = AsyncStream<Void>.makeStream()
        let holder = Task {
            try await client.withConnection { _ in
                holding.finish()
                try await Task.sleep(for: .milliseconds(700))
            }
        }
        for await _ in held {}  // the holder has the only connection
        // About 0.3 s are left once the holder lets go: not enough for half a second's work.
        let error = await #expect(throws: PostgresError.self) {
            try await RequestDeadline.$current.withValue(.now + .seconds(1)) {
                try await scoped.withTenant(company) { connection in
                    try await connection.query("SELECT pg_sleep(0.5)")
                }
            }
        }
        // Stopped by its statement timeout; or, on a machine so busy that the holder let go
        // only after the deadline, by the wait for the connection or by the deadline having
        // passed before the statement could be sent. Either way, in time, and never the
        // half second of work done.
        let stoppedInTime = error?.sqlState == PostgresError.SQLState.queryCanceled
            || error?.code == .poolTimeout || error?.code == .timedOut
        #expect(stoppedInTime, "\(String(reflecting: error))")
        try await holder.value
        await client.shutDown()
    }

    /// Production: a dedicated login role, member of survey_app, logs in directly.
    @Test func aDedicatedLoginRoleMemberOfSurveyAppWorks() async throws {
        let role = "survey_api_\(UInt32.random(in: 0...UInt32.max))"
        try await superuser.withConnection { connection in
            try await connection.simpleQuery("CREATE ROLE \(role) LOGIN NOINHERIT IN ROLE survey_app")
        }
        var components = try #require(URLComponents(string: try TestDatabase.url()))
        components.user = role
        let pool = Database(client: Database.applicationPool(
            url: try #require(components.string), applicationName: "surveyd-serve", maximumConnections: 1, logger: TestDatabase.logger))
        let company = try await newCompany()
        let (user, count) = try await pool.withTenant(company) { connection in
            try await connection.query("SELECT current_user::text, (SELECT count(*)::int FROM companies)").one().decode((String, Int).self)
        }
        #expect(user == "survey_app")
        #expect(count == 1)
        await pool.client.shutDown()
        try await superuser.withConnection { connection in
            try await connection.simpleQuery("DROP ROLE \(role)")
        }
    }
}

/// `Database.read`, the one-round-trip tenant read: the same isolation as `withTenant`,
/// batched (the default) or alone (`batchingReads` off, for Citus).
@Suite struct SingleRoundTripReadTests {
    @Test(arguments: [true, false]) func aReadSeesOnlyItsTenantAndLeavesNothingBehind(batching: Bool) async throws {
        var database = try await TestDatabase.application()
        database.batchingReads = batching
        let companies = CompanyRepository(database: database)
        let (mine, _, _) = try await companies.create(name: "Mine", settings: .alwaysOpen)
        let (theirs, _, _) = try await companies.create(name: "Theirs", settings: .alwaysOpen)
        let question = NewQuestion(body: "q", language: try LanguageTag(parsing: "en"))
        _ = try await SurveyRepository(database: database).create(NewSurvey(name: "theirs", interactionType: "t", questions: [question]), company: theirs.id)
        // No WHERE clause: row-level security alone keeps the other company out.
        let names = try await database.read(mine.id, "SELECT name FROM surveys").map { try $0.decode(String.self) }
        #expect(!names.contains("theirs"))
        let own = try await database.read(theirs.id, "SELECT name FROM surveys").map { try $0.decode(String.self) }
        #expect(own == ["theirs"])
        // An error is thrown, and the connection comes back clean: no tenant left set.
        await #expect(throws: PostgresError.self) { try await database.read(mine.id, "SELECT 1/0") }
        try await database.client.withConnection { connection in
            let setting = try await connection.query("SELECT coalesce(current_setting('app.company_id', true), '')").one().decode(String.self)
            #expect(setting == "")
            #expect(try await connection.query("SELECT count(*)::int FROM surveys").one().decode(Int.self) == 0)
        }
    }

    /// A read writes nothing, and a request's read stops at what is left of its deadline.
    @Test(arguments: [true, false]) func aReadIsReadOnlyAndBoundedByTheRequestsDeadline(batching: Bool) async throws {
        var database = try await TestDatabase.application()
        database.batchingReads = batching
        let (company, _, _) = try await CompanyRepository(database: database).create(name: "Reader", settings: .alwaysOpen)
        let error = await #expect(throws: PostgresError.self) {
            try await database.read(company.id, "INSERT INTO surveys (company_id, name, interaction_type) VALUES (\(company.id), 'w', 't')")
        }
        #expect(error?.sqlState == "25006", "read-only transaction")
        #expect(try await database.read(company.id, "SELECT count(*)::int FROM surveys").one().decode(Int.self) == 0)
        let timeout = try await RequestDeadline.$current.withValue(.now + .seconds(3)) {
            try await database.read(company.id, "SELECT current_setting('statement_timeout')").one().decode(String.self)
        }
        // What is left of 3 s, less the server's margin: at most 2750 ms (less on a busy
        // machine), where the session's own is 30 s.
        let milliseconds = Int(timeout.dropLast(2)) ?? 0
        #expect(timeout.hasSuffix("ms") && (1...2750).contains(milliseconds), "\(timeout)")
    }
}
