import Hummingbird
import Logging
import NIOCore
import SurveyDomain
import SurveyStorage
import WebhookSender

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
    /// Company webhooks: how `/webhooks` checks URLs and makes `/test` and `/retry` attempts.
    public var companyWebhooks: CompanyWebhooks
    public var limits: Limits
    public var operations: Operations
    /// Enables `/dashboard`: its templates and assets; `nil` leaves it unrouted.
    public var dashboard: DashboardResources?
    /// A hot standby the reports read from while it is fresh (`REPORTS_DATABASE_URL`);
    /// `nil`: they read from the primary.
    public var reportsReplica: ReportsReplica?

    public struct ReportsReplica: Sendable {
        /// Its pool (a service of the API's process).
        public var database: Database
        /// Further behind than this, reports read from the primary.
        public var maximumLag: Duration

        public init(database: Database, maximumLag: Duration = .seconds(30)) {
            self.database = database
            self.maximumLag = maximumLag
        }
    }

    /// The operator's endpoints, each enabled by what it needs (`/health` always is).
    public struct Operations: Sendable {
        /// Enables `/ready`: the migrations this build expects.
        public var migrator: Migrator?
        /// Enables `/metrics`: the Prometheus exposition.
        public var metrics: (@Sendable () -> [UInt8])?
        /// Enables `/openapi.yaml` and `/openapi.json`.
        public var openAPI: OpenAPIDocument?
        /// A readiness check that takes longer has failed (a probe must not hang).
        public var readinessTimeout: Duration

        public init(
            migrator: Migrator? = nil, metrics: (@Sendable () -> [UInt8])? = nil, openAPI: OpenAPIDocument? = nil,
            readinessTimeout: Duration = .seconds(2)
        ) {
            self.migrator = migrator
            self.metrics = metrics
            self.openAPI = openAPI
            self.readinessTimeout = readinessTimeout
        }
    }

    /// What one client may ask of the service.
    public struct Limits: Sendable {
        /// Requests per API token, across all replicas.
        public var perToken: RateLimit
        /// Requests per company (all its tokens), unless the company has its own.
        public var perCompany: RateLimit
        /// Failed authentications per client address, across all replicas.
        public var failedAuthentication: RateLimit
        /// Take the client's address from the last `X-Forwarded-For` entry (behind a load
        /// balancer that appends it), not from the connection.
        public var trustForwardedFor: Bool
        /// Past this a request is stopped and answered 503.
        public var requestTimeout: Duration
        /// A connection with no request for this long is closed (slow or abandoned clients).
        public var idleTimeout: Duration
        /// A request's head and body must arrive within this, from its first byte (408 and
        /// the connection closed past it).
        public var receiveTimeout: Duration
        /// Connections open at once, in all and per client address; more are refused (503).
        public var maximumConnections: Int
        public var maximumConnectionsPerAddress: Int

        public init(
            perToken: RateLimit = .perTokenDefault, perCompany: RateLimit = .perCompanyDefault,
            failedAuthentication: RateLimit = .failedAuthenticationDefault,
            trustForwardedFor: Bool = false, requestTimeout: Duration = .seconds(30), idleTimeout: Duration = .seconds(60),
            receiveTimeout: Duration = .seconds(10), maximumConnections: Int = 10_000, maximumConnectionsPerAddress: Int = 256
        ) {
            self.receiveTimeout = receiveTimeout
            self.maximumConnections = maximumConnections
            self.maximumConnectionsPerAddress = maximumConnectionsPerAddress
            self.perToken = perToken
            self.perCompany = perCompany
            self.failedAuthentication = failedAuthentication
            self.trustForwardedFor = trustForwardedFor
            self.requestTimeout = requestTimeout
            self.idleTimeout = idleTimeout
        }
    }

    public struct Webhooks: Sendable {
        /// The provider's auth token, which signs every webhook.
        public var authToken: String
        /// Our account at the provider (`AC…`); webhooks naming another are refused.
        public var accountSID: String
        /// Our public base URL as the provider calls it, e.g. `https://api.example.com`.
        public var publicBaseURL: String

        public init(authToken: String, accountSID: String, publicBaseURL: String) {
            self.authToken = authToken
            self.accountSID = accountSID
            self.publicBaseURL = publicBaseURL.hasSuffix("/") ? String(publicBaseURL.dropLast()) : publicBaseURL
        }
    }

    public struct CompanyWebhooks: Sendable {
        /// Makes `/test` and `/retry` attempts; a service of the API's process.
        public var sender: WebhookSender
        /// Resolves a URL's host at registration, whose every address must be public.
        public var resolver: any HostResolver
        /// The operator's `WEBHOOK_ALLOW_PRIVATE_URLS`: `http` and any address.
        public var allowPrivateAddresses: Bool

        public init(sender: WebhookSender, resolver: any HostResolver, allowPrivateAddresses: Bool) {
            self.sender = sender
            self.resolver = resolver
            self.allowPrivateAddresses = allowPrivateAddresses
        }

        /// The system resolver, and a sender with the same rule on private addresses.
        public init(allowPrivateAddresses: Bool = false, logger: Logger = Logger(label: "surveyd.webhooks")) {
            var configuration = WebhookSender.Configuration()
            configuration.allowPrivateAddresses = allowPrivateAddresses
            self.init(
                sender: WebhookSender(configuration: configuration, logger: logger), resolver: SystemHostResolver(),
                allowPrivateAddresses: allowPrivateAddresses)
        }
    }

    public init(
        host: String = "0.0.0.0", port: Int = 8080, adminToken: String? = nil, destinationHasher: DestinationHasher,
        sendingPolicy: SendingPolicy = SendingPolicy(), webhooks: Webhooks? = nil,
        companyWebhooks: CompanyWebhooks = CompanyWebhooks(), limits: Limits = Limits(),
        operations: Operations = Operations(), dashboard: DashboardResources? = nil
    ) {
        self.dashboard = dashboard
        self.companyWebhooks = companyWebhooks
        self.operations = operations
        self.webhooks = webhooks
        self.limits = limits
        self.host = host
        self.port = port
        self.adminToken = adminToken
        self.destinationHasher = destinationHasher
        self.sendingPolicy = sendingPolicy
    }
}

/// The base path of the API reference, kept so its clients only change the host.
public let apiBasePath = "survey/1.0.0"

/// The parts of the API that live longer than a request and that its services maintain.
public struct APIComponents: Sendable {
    public let authenticator: TokenAuthenticator
    public let rateLimiter: SharedRateLimiter<ContinuousClock>

    public init(database: Database, logger: Logger) {
        authenticator = TokenAuthenticator(companies: CompanyRepository(database: database))
        rateLimiter = SharedRateLimiter(repository: RateLimitRepository(database: database), logger: logger)
    }
}

/// The router with every route and middleware; shared by `serve` and the tests.
public func buildRouter(
    configuration: APIConfiguration, database: Database, components: APIComponents? = nil
) -> Router<AppRequestContext> {
    let components = components ?? APIComponents(database: database, logger: Logger(label: "surveyd.api"))
    let router = Router(context: AppRequestContext.self)
    let table = RouteTable()
    router.add(middleware: RequestIDMiddleware())
    router.add(middleware: MetricsMiddleware())
    router.add(middleware: ProblemMiddleware(routes: table))
    router.add(middleware: RequestTimeoutMiddleware(timeout: configuration.limits.requestTimeout))

    OperationsController<AppRequestContext>(database: database, operations: configuration.operations)
        .addRoutes(to: Routes(group: router.group(), prefix: "", table: table))

    let failures = FailedAuthentications(
        limiter: components.rateLimiter, limit: configuration.limits.failedAuthentication,
        trustForwardedFor: configuration.limits.trustForwardedFor, addressHasher: configuration.destinationHasher)
    let tenantAPI = router.group(RouterPath(apiBasePath))
        .add(
            middleware: TokenAuthMiddleware(
                authenticator: components.authenticator, limiter: components.rateLimiter,
                limits: configuration.limits, failures: failures)
        )
        .group(context: TenantRequestContext.self)
    let tenantRoutes = Routes(group: tenantAPI, prefix: apiBasePath, table: table)
    let companies = CompanyRepository(database: database)
    SurveyController(surveys: SurveyRepository(database: database)).addRoutes(to: tenantRoutes)
    SendController(
        sends: SendRepository(database: database, policy: configuration.sendingPolicy),
        idempotency: IdempotencyRepository(), hasher: configuration.destinationHasher
    ).addRoutes(to: tenantRoutes)
    UsageController(replies: ReplyRepository(database: database), companies: companies).addRoutes(to: tenantRoutes)
    let reports = ReportRepository(
        reads: ReportReads(
            primary: database, replica: configuration.reportsReplica?.database,
            maximumLag: configuration.reportsReplica?.maximumLag ?? .seconds(30)))
    ReportController(reports: reports).addRoutes(to: tenantRoutes)
    RequestController(requests: RequestRepository(database: database)).addRoutes(to: tenantRoutes)
    PrivacyController(privacy: PrivacyRepository(database: database), hasher: configuration.destinationHasher)
        .addRoutes(to: tenantRoutes)
    CompanySelfServiceController(companies: companies).addRoutes(to: tenantRoutes)
    WebhookEndpointController(
        endpoints: WebhookEndpointRepository(database: database), deliveries: WebhookDeliveryRepository(database: database),
        settings: configuration.companyWebhooks
    ).addRoutes(to: tenantRoutes)

    if let resources = configuration.dashboard {
        let group = router.group("dashboard").add(middleware: DashboardMiddleware(resources: resources))
        let pages = DashboardPages(
            resources: resources, surveys: SurveyRepository(database: database), reports: reports,
            requests: RequestRepository(database: database), replies: ReplyRepository(database: database), companies: companies)
        DashboardController(
            resources: resources, sessions: DashboardSessionRepository(database: database), authenticator: components.authenticator,
            limiter: components.rateLimiter, limits: configuration.limits, failures: failures, companies: companies, pages: pages,
            requestExport: RequestController(requests: RequestRepository(database: database))
        ).addRoutes(to: Routes(group: group, prefix: "dashboard", table: table))
    }

    // The score and unsubscribe links of e-mailed surveys: their token is the credential.
    ResponseLinkController(links: ResponseLinkRepository(database: database))
        .addRoutes(to: Routes(group: router.group(), prefix: "", table: table))

    if let webhooks = configuration.webhooks {
        let group = router.group("webhooks/twilio")
        WebhookController<AppRequestContext>(
            configuration: .init(
                authToken: webhooks.authToken, accountSID: webhooks.accountSID, publicBaseURL: webhooks.publicBaseURL),
            replies: ReplyRepository(database: database), calls: VoiceRepository(database: database),
            hasher: configuration.destinationHasher
        ).addRoutes(to: Routes(group: group, prefix: "webhooks/twilio", table: table))
    }

    if let adminToken = configuration.adminToken, !adminToken.isEmpty {
        let admin = router.group("admin").add(
            middleware: AdminAuthMiddleware(adminToken: adminToken, failures: failures))
        AdminController(companies: companies)
            .addRoutes(to: Routes(group: admin, prefix: "admin", table: table))
    }
    return router
}

/// The HTTP application: the router, served on `configuration.host:port`, with the
/// database pool, the token cache's listener and the rate limiter's janitor as services
/// of the same lifecycle.
public func buildApplication(
    configuration: APIConfiguration, database: Database, logger: Logger
) -> some ApplicationProtocol {
    let components = APIComponents(database: database, logger: logger)
    var application = Application(
        router: buildRouter(configuration: configuration, database: database, components: components),
        server: .guardedHTTP1(
            idleTimeout: TimeAmount(configuration.limits.idleTimeout), receiveTimeout: TimeAmount(configuration.limits.receiveTimeout),
            admission: ConnectionAdmission(
                maximum: configuration.limits.maximumConnections,
                maximumPerAddress: configuration.limits.maximumConnectionsPerAddress)),
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "surveyd"),
        logger: logger)
    if let replica = configuration.reportsReplica { application.addServices(replica.database) }
    application.addServices(
        database,
        configuration.companyWebhooks.sender,
        TokenChangeListener(authenticator: components.authenticator, database: database, logger: logger),
        RateLimitJanitor(
            limiter: components.rateLimiter, repository: RateLimitRepository(database: database), logger: logger))
    return application
}

/// A process without the API (the worker) still answers its operator: `/health`, and
/// `/metrics` and `/ready` when configured, on their own port.
public func buildOperationsApplication(
    host: String, port: Int, operations: APIConfiguration.Operations, database: Database, logger: Logger
) -> some ApplicationProtocol {
    let router = Router(context: AppRequestContext.self)
    let table = RouteTable()
    router.add(middleware: RequestIDMiddleware())
    router.add(middleware: ProblemMiddleware(routes: table))
    OperationsController<AppRequestContext>(database: database, operations: operations)
        .addRoutes(to: Routes(group: router.group(), prefix: "", table: table))
    return Application(
        router: router, configuration: .init(address: .hostname(host, port: port), serverName: "surveyd-worker"),
        logger: logger)
}
