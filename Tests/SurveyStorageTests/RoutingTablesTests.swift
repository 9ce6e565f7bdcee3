import Foundation
import Postgres
import SurveyDomain
import SurveyStorage
import TestSupport
import Testing

/// Issue 12: `open_surveys` and `provider_messages` had `USING (true)` for every role, so a
/// bug in the API could read or delete another company's open survey slot. The API now
/// reaches them only through functions that act for its own tenant or return a pointer.
@Suite struct RoutingTablesTests {
    let database: Database
    let superuser: PostgresClient

    init() async throws {
        database = try await TestDatabase.application()
        superuser = try await TestDatabase.superuser()
    }

    static func hash() -> Data { Data((0..<32).map { _ in UInt8.random(in: 0...255) }) }

    /// A slot of `company` for `hash`, as a send would have claimed it.
    func slot(_ company: CompanyID, _ hash: Data) async throws -> Int64 {
        try await database.withTenant(company) { connection in
            try await connection.query("SELECT request_id FROM claim_open_surveys(ARRAY[\(hash)]::bytea[], 3600)").one()
                .decode(Int64.self)
        }
    }

    func slots(_ hash: Data) async throws -> Int {
        try await superuser.withConnection { connection in
            try await connection.query("SELECT count(*)::int FROM open_surveys WHERE destination_hash = \(hash)").one().decode(Int.self)
        }
    }

    @Test(arguments: [
        "SELECT count(*) FROM open_surveys", "DELETE FROM open_surveys", "UPDATE open_surveys SET expires_at = now()",
        "INSERT INTO open_surveys VALUES ('\\x00', 1, 1, now())", "SELECT count(*) FROM provider_messages",
        "DELETE FROM provider_messages", "INSERT INTO provider_messages VALUES ('SMx', 1, 1)",
    ])
    func theAPIRoleCannotTouchTheRoutingTables(_ statement: String) async throws {
        let company = try await CompanyRepository(database: database).create(name: "Routing", settings: .alwaysOpen).0.id
        await #expect(throws: PostgresError.self) {
            try await database.withTenant(company) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: statement))
            }
        }
    }

    @Test func aTenantReleasesOnlyItsOwnSlots() async throws {
        let companies = CompanyRepository(database: database)
        let mine = try await companies.create(name: "Mine", settings: .alwaysOpen).0.id
        let theirs = try await companies.create(name: "Theirs", settings: .alwaysOpen).0.id
        let hash = Self.hash()
        let request = try await slot(theirs, hash)
        // Their slot, named exactly, released with my tenant set: nothing happens.
        try await database.withTenant(mine) { connection in
            try await connection.query("SELECT release_open_surveys(ARRAY[\(hash)]::bytea[], ARRAY[\(request)]::bigint[])")
        }
        #expect(try await slots(hash) == 1)
        // Claiming it while it is open gets nothing either.
        let claimed = try await database.withTenant(mine) { connection in
            try await connection.query("SELECT request_id FROM claim_open_surveys(ARRAY[\(hash)]::bytea[], 3600)").count
        }
        #expect(claimed == 0)
        // Their own release works.
        try await database.withTenant(theirs) { connection in
            try await connection.query("SELECT release_open_surveys(ARRAY[\(hash)]::bytea[], ARRAY[\(request)]::bigint[])")
        }
        #expect(try await slots(hash) == 0)
    }

    @Test func theFunctionsRefuseToActWithoutATenant() async throws {
        let hash = Self.hash()
        await #expect(throws: PostgresError.self) {
            try await database.client.withTransaction { connection in
                try await connection.query("SELECT * FROM claim_open_surveys(ARRAY[\(hash)]::bytea[], 3600)")
            }
        }
        #expect(try await slots(hash) == 0)
    }
}
