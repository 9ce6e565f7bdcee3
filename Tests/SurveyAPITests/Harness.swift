import APITestSupport
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

/// The application exactly as `serve` builds it, on the migrated test database, driven
/// in-process through Hummingbird's router test client.
struct Harness {
    static let adminToken = "test-admin-token-\(UInt64.random(in: 0...UInt64.max))"

    let database: Database

    /// A fixed key for tests: hashes are then predictable.
    static let hashKey = String(repeating: "5a", count: 32)
    static let hasher = try! DestinationHasher(hexKey: hashKey)

    /// Limits no functional test reaches; the limit tests set their own.
    static let generousLimits = APIConfiguration.Limits(
        perToken: RateLimit(ratePerSecond: 1_000_000, burst: 1_000_000),
        perCompany: RateLimit(ratePerSecond: 1_000_000, burst: 1_000_000),
        failedAuthentication: RateLimit(ratePerSecond: 1_000_000, burst: 1_000_000))

    static func configuration(
        adminToken: String? = Harness.adminToken, limits: APIConfiguration.Limits = generousLimits
    ) -> APIConfiguration {
        APIConfiguration(adminToken: adminToken, destinationHasher: hasher, limits: limits)
    }

    init() async throws {
        database = try await TestDatabase.application()
    }

    func application(
        adminToken: String? = Harness.adminToken, limits: APIConfiguration.Limits = generousLimits
    ) -> some ApplicationProtocol {
        Application(
            router: buildRouter(
                configuration: Harness.configuration(adminToken: adminToken, limits: limits), database: database))
    }

    /// Runs `body` with a test client of the application.
    func test<Value: Sendable>(
        adminToken: String? = Harness.adminToken, limits: APIConfiguration.Limits = generousLimits,
        _ body: @Sendable (any TestClientProtocol) async throws -> Value
    ) async throws -> Value {
        try await application(adminToken: adminToken, limits: limits).test(.router) { client in
            try await body(ContractCheckedClient(client))
        }
    }

    /// Runs `body` with a test client of the application built from `configuration`.
    func test<Value: Sendable>(
        configuration: APIConfiguration, _ body: @Sendable (any TestClientProtocol) async throws -> Value
    ) async throws -> Value {
        try await Application(router: buildRouter(configuration: configuration, database: database)).test(.router) { client in
            try await body(ContractCheckedClient(client))
        }
    }

    /// A new company and its token, created the way the CLI does.
    func company(_ name: String = "Company \(UInt32.random(in: 0...UInt32.max))") async throws -> Tenant {
        let (company, tokenID, token) = try await CompanyRepository(database: database).create(name: name, settings: .alwaysOpen)
        return Tenant(id: company.id, tokenID: tokenID, token: token.secret)
    }

    /// Another token of `tenant`'s company, as headers.
    func token(for tenant: Tenant, scope: TokenScope = .write) async throws -> HTTPFields {
        let (_, token) = try await CompanyRepository(database: database).createToken(company: tenant.id, scope: scope)
        return [.authorization: "Bearer \(token.secret)", .contentType: "application/json"]
    }

    func superuser() async throws -> PostgresClient { try await TestDatabase.superuser() }

    /// Counts rows of a table for a company, as the superuser (row-level security does not
    /// apply to it), to prove what a request did or did not write.
    func count(_ table: String, company: CompanyID) async throws -> Int {
        try await superuser().withConnection { connection in
            try await connection.query("SELECT count(*)::int FROM \(identifier: table) WHERE company_id = \(company)")
                .one().decode(Int.self)
        }
    }
}

struct Tenant: Sendable {
    var id: CompanyID
    var tokenID: TokenID
    var token: String

    var headers: HTTPFields {
        [.authorization: "Bearer \(token)", .contentType: "application/json"]
    }
}

extension TestClientProtocol {
    /// Sends a request with a JSON body (a string, so tests can send malformed JSON too).
    func send(
        _ method: HTTPRequest.Method, _ path: String, headers: HTTPFields = [:], body: String? = nil
    ) async throws -> TestResponse {
        try await execute(
            uri: path, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
    }

    /// Creates a survey for `tenant`, a question per language ("Question in fr?"), and
    /// returns its id.
    func createSurvey(
        for tenant: Tenant, languages: [String] = ["en"], sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> Int {
        let questions = languages.map { #"{"body":"Question in \#($0)?","language":"\#($0)"}"# }.joined(separator: ",")
        let created = try await send(
            .post, "\(base)/surveys", headers: tenant.headers,
            body: #"{"name":"support","interactionType":"care","questions":[\#(questions)]}"#)
        return try #require(created.object["id"] as? Int, "\(created.text)", sourceLocation: sourceLocation)
    }
}

extension TestResponse {
    var text: String { String(buffer: body) }

    /// The body as JSON objects/arrays, for assertions.
    var json: Any? { try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]) }
    var object: [String: Any] { json as? [String: Any] ?? [:] }
    var array: [[String: Any]] { json as? [[String: Any]] ?? [] }

    /// The `field` of each entry of a problem's `errors`.
    var errorFields: [String] {
        (object["errors"] as? [[String: Any]] ?? []).compactMap { $0["field"] as? String }
    }

    /// Checks the response is an RFC 9457 problem with this status.
    func expectProblem(_ status: HTTPResponse.Status, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(self.status == status, "\(text)", sourceLocation: sourceLocation)
        #expect(headers[.contentType] == "application/problem+json", sourceLocation: sourceLocation)
        #expect(object["status"] as? Int == status.code, sourceLocation: sourceLocation)
        #expect(object["title"] is String, sourceLocation: sourceLocation)
        #expect(object["type"] is String, sourceLocation: sourceLocation)
        #expect(object["detail"] is String, "a problem without detail: \(text)", sourceLocation: sourceLocation)
    }
}

let base = "/survey/1.0.0"
