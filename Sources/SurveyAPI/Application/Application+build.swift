import Hummingbird
import Logging
import Postgres
import SurveyDomain
import SurveyStorage

/// What `serve` needs besides the database, read from the environment by `surveyd`.
public struct APIConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Enables the admin API; `nil` leaves it unrouted (404).
    public var adminToken: String?
    /// Turns phone numbers into the keyed hashes the database keeps.
    public var destinationHasher: DestinationHasher
    public var sendingPolicy: SendingPolicy
    /// Enables `/webhooks/twilio/...`; `nil` leaves them unrouted.
    public var webhooks: Webhooks?

    public struct Webhooks: Sendable {
        /// The provider's auth token, which signs every webhook.
        public var authToken: String
        /// Our public base URL as the provider calls it, e.g. `https://api.example.com`.
        public var publicBaseURL: String

        public init(authToken: String, publicBaseURL: String) {
            self.authToken = authToken
            self.publicBaseURL = publicBaseURL.hasSuffix("/") ? String(publicBaseURL.dropLast()) : publicBaseURL
        }
    }

    public init(
        host: String = "0.0.0.0", port: Int = 8080, adminToken: String? = nil, destinationHasher: DestinationHasher,
        sendingPolicy: SendingPolicy = SendingPolicy(), webhooks: Webhooks? = nil
    ) {
        self.webhooks = webhooks
        self.host = host
        self.port = port
        self.adminToken = adminToken
        self.destinationHasher = destinationHasher
        self.sendingPolicy = sendingPolicy
    }
}

/// The base path of the API reference, kept so its clients only change the host.
public let apiBasePath = "survey/1.0.0"

/// The router with every route and middleware; shared by `serve` and the tests.
public func buildRouter(configuration: APIConfiguration, database: Database) -> Router<AppRequestContext> {
    let router = Router(context: AppRequestContext.self)
    let table = RouteTable()
    router.add(middleware: ProblemMiddleware(routes: table))

    let tenantAPI = router.group(RouterPath(apiBasePath))
        .add(middleware: TokenAuthMiddleware(companies: CompanyRepository(database: database)))
        .group(context: TenantRequestContext.self)
    let tenantRoutes = Routes(group: tenantAPI, prefix: apiBasePath, table: table)
    SurveyController(surveys: SurveyRepository(database: database)).addRoutes(to: tenantRoutes)
    SendController(
        sends: SendRepository(database: database, policy: configuration.sendingPolicy),
        idempotency: IdempotencyRepository(database: database), hasher: configuration.destinationHasher
    ).addRoutes(to: tenantRoutes)
    UsageController(replies: ReplyRepository(database: database)).addRoutes(to: tenantRoutes)
    ReportController(reports: ReportRepository(database: database)).addRoutes(to: tenantRoutes)

    if let webhooks = configuration.webhooks {
        let group = router.group("webhooks/twilio")
        WebhookController<AppRequestContext>(
            configuration: .init(authToken: webhooks.authToken, publicBaseURL: webhooks.publicBaseURL),
            replies: ReplyRepository(database: database), hasher: configuration.destinationHasher
        ).addRoutes(to: Routes(group: group, prefix: "webhooks/twilio", table: table))
    }

    if let adminToken = configuration.adminToken, !adminToken.isEmpty {
        let admin = router.group("admin").add(middleware: AdminAuthMiddleware(adminToken: adminToken))
        AdminController(companies: CompanyRepository(database: database))
            .addRoutes(to: Routes(group: admin, prefix: "admin", table: table))
    }
    return router
}

/// The HTTP application: the router, served on `configuration.host:port`, with the
/// database pool as a service of the same lifecycle.
public func buildApplication(
    configuration: APIConfiguration, database: Database, logger: Logger
) -> some ApplicationProtocol {
    var application = Application(
        router: buildRouter(configuration: configuration, database: database),
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "surveyd"),
        logger: logger)
    application.addServices(database.client)
    return application
}
