import Logging
import Postgres
import SurveyDomain
import Synchronization

/// The product's database: a pool of connections that run as the unprivileged role
/// `survey_app`, and the one way in for tenant data, `withTenant(_:_:)`.
public struct Database: Sendable {
    public let client: PostgresClient

    /// The role `serve` and the worker run every query as; created by the migrations.
    public static let applicationRole = "survey_app"

    public init(client: PostgresClient) {
        self.client = client
    }

    /// A pool whose connections switch to `survey_app` before first use.
    ///
    /// In production `url` logs in as a dedicated role that is a member of `survey_app`.
    /// Where it logs in as a privileged role (local runs, Compose), `SET ROLE` still makes
    /// every query run as `survey_app`, and a warning says so once.
    public static func applicationPool(
        url: String, applicationName: String, maximumConnections: Int = 10, logger: Logger
    ) -> PostgresClient {
        var configuration = PostgresClient.Configuration(
            connection: .init(url: url, applicationName: applicationName))
        configuration.maximumConnections = maximumConnections
        configuration.minimumConnections = min(2, maximumConnections)
        let warned = Atomic<Bool>(false)
        configuration.connectionSetup = { connection in
            let row = try await connection.query(
                "SELECT current_user::text, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
            ).single
            let (user, superuser, bypassRLS) = try row?.decode((String, Bool, Bool).self) ?? ("?", false, false)
            if superuser || bypassRLS, !warned.exchange(true, ordering: .relaxed) {
                logger.warning(
                    "DATABASE_URL logs in as a privileged role; switching every connection to \(applicationRole). In production, log in as a dedicated role that is a member of \(applicationRole).",
                    metadata: ["role": "\(user)"])
            }
            try await connection.simpleQuery("SET ROLE \(applicationRole)")
        }
        return PostgresClient(configuration: configuration, logger: logger)
    }

    /// Runs `body` in a transaction scoped to one company: row-level security shows and
    /// accepts only that company's rows. The setting is transaction-local, so it ends with
    /// the transaction and can never leak to the next user of the pooled connection.
    public func withTenant<Result>(
        _ company: CompanyID, _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await client.withTransaction { connection in
            try await connection.query("SELECT set_config('app.company_id', \(String(company.rawValue)), true)")
            return try await body(connection)
        }
    }
}

extension Identifier: PostgresEncodable, PostgresDecodable, PostgresOptionalDecodableOrValue {
    public var postgresText: String? { String(rawValue) }
    public init(postgresText text: String) throws(PostgresError) {
        self.init(rawValue: try Int64(postgresText: text))
    }
}

extension LanguageTag: PostgresEncodable, PostgresDecodable, PostgresOptionalDecodableOrValue {
    public var postgresText: String? { value }
    public init(postgresText text: String) throws(PostgresError) {
        do {
            try self.init(parsing: text)
        } catch {
            throw PostgresError(code: .decoding, message: "stored language tag is invalid: \(error)")
        }
    }
}
