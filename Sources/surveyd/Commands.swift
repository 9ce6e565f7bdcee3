import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SMSGateway
import Logging
import MailTransport
import NIOPosix
import Postgres
import ServiceLifecycle
import SurveyAPI
import SurveyDomain
import SurveyStorage
import SurveyWorker
import WebhookSender
import Telemetry
import UnixSignals

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply pending migrations (MIGRATION_DATABASE_URL, else DATABASE_URL); a no-op when up to date.")

    func run() async throws {
        let logger = Environment.logger("surveyd.migrate")
        let migrator = try Migrator(directory: Environment.sqlDirectory())
        let threadPool = NIOThreadPool(numberOfThreads: 1)
        threadPool.start()
        let connection = try await PostgresConnection.connect(
            // A migration may rewrite or index a large table, or wait for another
            // migrator's lock: a day, not the minute a request's statement gets.
            configuration: .init(
                url: try Environment.migrationDatabaseURL(), applicationName: "surveyd-migrate", responseTimeout: .seconds(86_400),
                transactionControlTimeout: .seconds(86_400)),
            threadPool: threadPool, ownsThreadPool: true, logger: logger)
        let applied: [String]
        do {
            applied = try await migrator.migrate(on: connection, logger: logger)
        } catch {
            await connection.close()
            throw error
        }
        await connection.close()
        print(applied.isEmpty ? "Database is up to date." : "Applied: \(applied.joined(separator: ", "))")
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the HTTP API (HOST, PORT, DATABASE_URL, DESTINATION_HASH_KEY, ADMIN_TOKEN, TWILIO_AUTH_TOKEN, TWILIO_ACCOUNT_SID, PUBLIC_BASE_URL).")

    func run() async throws {
        let logger = Environment.logger("surveyd.serve")
        let metrics = PrometheusMetrics.bootstrap()
        let port = try Environment.port()
        let waiting = try Environment.poolWaiting()
        let database = Database(client: Database.applicationPool(
            url: try Environment.databaseURL(), applicationName: "surveyd-serve",
            maximumConnections: try Environment.maximumConnections(default: 20), maximumWaiters: waiting.maximumWaiters,
            waitTimeout: waiting.waitTimeout, logger: logger), batchingReads: try Environment.batchingReads())
        var configuration = APIConfiguration(
            host: Environment.value("HOST") ?? "0.0.0.0", port: port, adminToken: Environment.value("ADMIN_TOKEN"),
            destinationHasher: try Environment.destinationHasher(), sendingPolicy: try Environment.sendingPolicy(),
            limits: try Environment.limits(),
            operations: .init(
                migrator: try Migrator(directory: Environment.sqlDirectory()), metrics: metrics.exposition,
                openAPI: try OpenAPIDocument(contentsOf: Environment.openAPIPath())),
            dashboard: try DashboardResources(directory: Environment.dashboardDirectory()))
        if configuration.adminToken == nil { logger.notice("ADMIN_TOKEN is not set: the admin API is disabled") }
        let allowPrivate = try Environment.allowPrivateWebhookURLs()
        if allowPrivate { logger.warning("WEBHOOK_ALLOW_PRIVATE_URLS=1: company webhooks may reach http and private addresses (development only)") }
        configuration.companyWebhooks = .init(allowPrivateAddresses: allowPrivate, logger: logger)
        // Connections past the descriptors the process may open would fail at accept, for
        // everyone: keep room for the database pool, files and the listener.
        if let descriptors = Environment.fileDescriptorLimit(), configuration.limits.maximumConnections > descriptors - 128 {
            let lowered = max(1, descriptors - 128)
            logger.notice(
                "MAX_CONNECTIONS lowered to fit the file descriptor limit",
                metadata: ["configured": "\(configuration.limits.maximumConnections)", "limit": "\(descriptors)", "now": "\(lowered)"])
            configuration.limits.maximumConnections = lowered
        }
        if let authToken = Environment.value("TWILIO_AUTH_TOKEN") {
            configuration.webhooks = .init(
                authToken: authToken, accountSID: try Environment.twilioAccountSID(),
                publicBaseURL: Environment.publicBaseURL(port: port))
        } else {
            logger.notice("TWILIO_AUTH_TOKEN is not set: the SMS webhooks (replies, delivery statuses) are disabled")
        }
        // Reports, trends and the dashboard's overviews from a hot standby, while it is fresh.
        if let replicaURL = Environment.value("REPORTS_DATABASE_URL") {
            configuration.reportsReplica = .init(
                database: Database(client: Database.applicationPool(
                    url: replicaURL, applicationName: "surveyd-serve-reports",
                    maximumConnections: try Environment.integer("REPORTS_DATABASE_MAX_CONNECTIONS", default: 8, range: 1...1000),
                    maximumWaiters: waiting.maximumWaiters, waitTimeout: waiting.waitTimeout, logger: logger),
                    batchingReads: database.batchingReads),
                maximumLag: .seconds(try Environment.double("REPORTS_REPLICA_MAX_LAG_SECONDS", default: 30, range: 0...86_400)))
        }
        let application = buildApplication(configuration: configuration, database: database, logger: logger)
        try await ServiceGroup.bounded([.init(service: application)], grace: try Environment.shutdownGrace(), logger: logger).run()
    }
}

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Send queued SMS, calls and e-mails (DATABASE_URL, DESTINATION_HASH_KEY, SMS_PROVIDER, SMS_RATE_LIMIT, TWILIO_*, SMTP_URL, MAIL_FROM).")

    func run() async throws {
        let logger = Environment.logger("surveyd.worker")
        let metrics = PrometheusMetrics.bootstrap()
        _ = try Environment.destinationHasher()
        let policy = try Environment.sendingPolicy()
        let pool = Database.applicationPool(
            url: try Environment.databaseURL(), applicationName: "surveyd-worker", role: .worker,
            maximumConnections: try Environment.maximumConnections(default: 4), logger: logger)
        let database = Database(client: pool)
        var workerConfiguration = SendWorker.Configuration()
        workerConfiguration.ratePerSecond = try Environment.double("SMS_RATE_LIMIT", default: 100, range: 0.1...100_000)
        workerConfiguration.batchSize = try Environment.integer("SMS_BATCH_SIZE", default: 500, range: 1...10_000)
        workerConfiguration.concurrency = try Environment.integer("SMS_CONCURRENCY", default: 64, range: 1...4096)
        workerConfiguration.lease = .seconds(try Environment.double("SMS_LEASE_SECONDS", default: 120, range: 1...3600))
        workerConfiguration.lanes = try Environment.integer("SMS_LANES", default: 2, range: 1...16)

        // No default: a deployment that forgot to name its provider must not record every
        // message as sent while delivering none. Decided before anything needs shutting down.
        guard let providerName = Environment.value("SMS_PROVIDER") else {
            throw Environment.Missing(
                name: "SMS_PROVIDER",
                hint: "name the provider: twilio to send for real, console to only log the messages (development)")
        }
        guard ["twilio", "console", "accept-all"].contains(providerName) else {
            throw Environment.Invalid(name: "SMS_PROVIDER", hint: "must be twilio, console or accept-all, got \(providerName)")
        }
        let twilio = providerName == "twilio" ? try Environment.twilio() : nil
        var emailConfiguration = workerConfiguration
        emailConfiguration.ratePerSecond = try Environment.double("EMAIL_RATE_LIMIT", default: 1000, range: 0.1...100_000)
        emailConfiguration.concurrency = try Environment.integer("EMAIL_CONCURRENCY", default: 16, range: 1...1024)
        let mail = try Environment.mail(concurrency: emailConfiguration.concurrency)
        var voiceConfiguration = workerConfiguration
        voiceConfiguration.ratePerSecond = try Environment.double("VOICE_RATE_LIMIT", default: 10, range: 0.1...10_000)
        voiceConfiguration.concurrency = try Environment.integer("VOICE_CONCURRENCY", default: 8, range: 1...1024)
        voiceConfiguration.lanes = 1
        var senderConfiguration = WebhookSender.Configuration()
        senderConfiguration.allowPrivateAddresses = try Environment.allowPrivateWebhookURLs()
        var dispatcherConfiguration = WebhookDispatcher.Configuration()
        dispatcherConfiguration.maximumInFlight = try Environment.integer("WEBHOOK_CONCURRENCY", default: 512, range: 1...10_000)
        dispatcherConfiguration.perEndpoint = try Environment.integer("WEBHOOK_ENDPOINT_CONCURRENCY", default: 16, range: 1...256)
        dispatcherConfiguration.perCompany = try Environment.integer("WEBHOOK_COMPANY_CONCURRENCY", default: 64, range: 1...10_000)
        dispatcherConfiguration.lease = .seconds(try Environment.double("WEBHOOK_LEASE_SECONDS", default: 60, range: 1...3600))
        dispatcherConfiguration.responseWindow = policy.responseWindow
        senderConfiguration.connectionsPerEndpoint = dispatcherConfiguration.perEndpoint
        // An attempt ends well within its lease, or another worker would make it again meanwhile.
        senderConfiguration.timeout = min(senderConfiguration.timeout, dispatcherConfiguration.lease / 2)
        let webhookConnections = try Environment.integer("WEBHOOK_DATABASE_CONNECTIONS", default: 2, range: 1...64)
        let metricsPort = try Environment.optionalPort("METRICS_PORT")
        let migrator = try Migrator(directory: Environment.sqlDirectory())
        // Last: from here on, leaving must shut the client down.
        let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: Environment.httpClientConfiguration(workerConfiguration.concurrency))
        // One provider account for messages and calls.
        let provider: any SMSProvider & CallProvider
        if var configuration = twilio {
            // An attempt must end well within its lease, or another worker would take its
            // outcome for unknown.
            configuration.timeout = min(configuration.timeout, workerConfiguration.lease / 2)
            provider = TwilioProvider(configuration: configuration, client: httpClient, logger: logger)
        } else if providerName == "console" {
            provider = ConsoleProvider(logger: logger)
        } else {
            provider = AcceptingProvider()
        }
        let worker = SendWorker(
            queue: QueueRepository(database: database, policy: policy), client: pool, provider: provider,
            configuration: workerConfiguration, logger: logger)
        // Webhook deliveries have a pool of their own: a burst of them never waits on, nor
        // delays, the SMS queue's connections.
        let webhookPool = Database.applicationPool(
            url: try Environment.databaseURL(), applicationName: "surveyd-webhooks", role: .worker,
            maximumConnections: webhookConnections, logger: logger)
        let webhookSender = WebhookSender(configuration: senderConfiguration, logger: logger)
        let dispatcher = WebhookDispatcher(
            database: Database(client: webhookPool), sender: webhookSender, configuration: dispatcherConfiguration, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: pool), .init(service: worker), .init(service: webhookPool), .init(service: dispatcher),
            .init(service: ReportCompactor(reports: ReportRepository(database: database), logger: logger)),
            .init(service: QueueMonitor(queue: QueueRepository(database: database, policy: policy), logger: logger)),
            .init(service: RoutingJanitor(database: database, logger: logger)),
            .init(service: Scheduler(database: database, policy: policy, logger: logger)),
        ]
        // Calls through the same provider: a worker of its own (calls are slow to place and
        // costly: a lower rate), on the same queue and pool.
        services.append(
            .init(
                service: SendWorker(
                    queue: QueueRepository(database: database, policy: policy), client: pool,
                    sender: VoiceSender(provider: provider, publicBaseURL: Environment.publicBaseURL(port: try Environment.port())),
                    configuration: voiceConfiguration, logger: logger)))
        // E-mail, when a relay is configured: a worker of its own (its own rate, its own
        // connections), on the same queue and pool.
        var mailer: SMTPMailer?
        if let (smtp, from) = mail {
            var smtp = smtp
            // An attempt must end well within its lease (as for SMS).
            let bound = TimeAmount.nanoseconds(Int64((emailConfiguration.lease / 2).components.seconds) * 1_000_000_000)
            smtp.timeouts.dataEnd = min(smtp.timeouts.dataEnd, bound)
            let relay = SMTPMailer(configuration: smtp, logger: logger)
            mailer = relay
            let sender = EmailSender(
                mailer: relay, configuration: .init(from: from, publicBaseURL: Environment.publicBaseURL(port: try Environment.port())))
            services.append(
                .init(
                    service: SendWorker(
                        queue: QueueRepository(database: database, policy: policy), client: pool, sender: sender,
                        configuration: emailConfiguration, logger: logger)))
        } else {
            logger.notice("SMTP_URL is not set: e-mail surveys are not sent by this worker")
        }
        // The worker serves no API; its operator still gets /health, /ready and /metrics.
        if let metricsPort {
            services.append(
                .init(
                    service: buildOperationsApplication(
                        host: Environment.value("HOST") ?? "0.0.0.0", port: metricsPort,
                        operations: .init(migrator: migrator, metrics: metrics.exposition),
                        database: database, logger: logger)))
        }
        let group = ServiceGroup.bounded(services, grace: try Environment.shutdownGrace(), logger: logger)
        do {
            try await group.run()
        } catch {
            await mailer?.shutdown()
            try? await httpClient.shutdown()
            throw error
        }
        await mailer?.shutdown()
        try await httpClient.shutdown()
    }
}

/// `surveyd sms reply`: plays the provider for local demos, posting a signed reply.
struct SMSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sms", abstract: "Local SMS tools.", subcommands: [Reply.self])

    struct Reply: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Post a correctly signed inbound SMS to the server on this machine, as the provider would, and print what it did.",
            discussion: """
                Posts to http://127.0.0.1:PORT (or --server), signed for PUBLIC_BASE_URL as the \
                server checks it, with TWILIO_AUTH_TOKEN and TWILIO_ACCOUNT_SID.
                """)

        @Option(help: "The sender, in E.164 (e.g. +32470000000).")
        var from: String

        @Option(help: "The text of the reply (e.g. 9, STOP).")
        var body: String

        @Option(help: "Where the server listens (default: http://127.0.0.1:PORT).")
        var server: String?

        func run() async throws {
            guard let authToken = Environment.value("TWILIO_AUTH_TOKEN") else {
                throw Environment.Missing(name: "TWILIO_AUTH_TOKEN", hint: "the token the server checks webhook signatures with")
            }
            let accountSID = try Environment.twilioAccountSID()
            let port = try Environment.port()
            let path = "/webhooks/twilio/sms"
            // Signed for the URL the server believes it is called at; sent to where it listens.
            let signedURL = Environment.publicBaseURL(port: port) + path
            let target = (server.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 } ?? "http://127.0.0.1:\(port)") + path
            let sid = "SM" + (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
            let parameters = [
                ("MessageSid", sid), ("SmsSid", sid), ("AccountSid", accountSID), ("From", from),
                ("To", Environment.value("SMS_SENDER") ?? "+3200000"), ("Body", body), ("NumSegments", "1"),
            ]
            var request = HTTPClientRequest(url: target)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            request.headers.add(
                name: "X-Twilio-Signature", value: TwilioSignature.sign(url: signedURL, parameters: parameters, authToken: authToken))
            request.body = .bytes(ByteBuffer(string: FormURLEncoding.encode(parameters)))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            let text = String(buffer: try await response.body.collect(upTo: 64 * 1024))
            guard (200..<300).contains(response.status.code) else {
                print("The server refused the reply: \(response.status.code) \(text)")
                throw ExitCode.failure
            }
            print(Self.describe(outcome: response.headers.first(name: "X-Reply-Outcome"), body: body, twiml: text))
        }

        /// What the reply did, in words.
        static func describe(outcome: String?, body: String, twiml: String) -> String {
            switch outcome {
            case "scored":
                if case .score(let score) = ReplyParser.parse(body) { return "Scored \(score)." }
                return "Scored."
            case "bad-response": return "Bad reply: not a score from 0 to 10; counted against the open survey."
            case "opted-out": return "Opted out: this number gets no more surveys (until START)."
            case "opted-in": return "Opted in: this number may be surveyed again."
            case "help":
                let message = twiml.components(separatedBy: "<Message>").dropFirst().first?.components(separatedBy: "</Message>").first
                return "Help answered: \(message ?? "")"
            case "ignored": return "No open survey for that number: nothing recorded."
            case "duplicate": return "Already processed (the same message id)."
            case "not-a-phone-number": return "Ignored: the sender is not an E.164 phone number."
            case let other?: return "Outcome: \(other)."
            case nil: return "Accepted (the server did not say what it did)."
            }
        }
    }
}

/// One-off commands over a short-lived pool, closed before exit.
func withDatabase<Result>(_ label: String, _ body: (Database) async throws -> Result) async throws -> Result {
    let logger = Environment.logger(label)
    let client = Database.applicationPool(
        url: try Environment.databaseURL(), applicationName: "surveyd-admin", role: .admin, maximumConnections: 1,
        logger: logger)
    do {
        let result = try await body(Database(client: client))
        await client.shutDown()
        return result
    } catch {
        await client.shutDown()
        throw error
    }
}

struct CompanyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "company", abstract: "Manage companies (tenants).", subcommands: [Create.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a company and print its id and first API token.")

        @Option(help: "The company's name (1 to 200 characters).")
        var name: String

        @Option(help: "When no survey is sent, HH:MM-HH:MM in the company's time zone, or off.")
        var quietHours = "21:00-09:00"

        @Option(help: "The company's IANA time zone, in which its quiet hours are read.")
        var timezone = CompanySettings.defaultTimeZone

        func validate() throws {
            guard CompanyLimits.nameLength.contains(name.unicodeScalars.count), !name.trimmingASCIIWhitespace().isEmpty else {
                throw ValidationError("--name must be 1 to 200 characters")
            }
            _ = try settings()
        }

        func settings() throws -> CompanySettings {
            guard ReportTimeZones.zone(named: timezone) != nil else {
                throw ValidationError("--timezone must be an IANA time zone name such as Europe/Brussels or UTC")
            }
            if quietHours == "off" { return CompanySettings(quietHours: nil, timeZone: timezone) }
            let parts = quietHours.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2, let start = TimeOfDay(parsing: parts[0]), let end = TimeOfDay(parsing: parts[1]),
                let hours = QuietHours(start: start, end: end)
            else { throw ValidationError("--quiet-hours must be HH:MM-HH:MM with two different times (e.g. 21:00-09:00), or off") }
            return CompanySettings(quietHours: hours, timeZone: timezone)
        }

        func run() async throws {
            let settings = try settings()
            let (company, tokenID, token) = try await withDatabase("surveyd.company") { database in
                try await CompanyRepository(database: database).create(name: name, settings: settings)
            }
            print("Company \(company.id) (\(company.name)) created.")
            print("API token \(tokenID), shown only now; keep it secret:")
            print(token.secret)
        }
    }
}

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Manage API tokens.", subcommands: [Create.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Issue another API token for a company.")

        @Option(help: "The company's id.")
        var company: Int64

        @Option(help: "read (reports and listings), write (also create, delete, send) or admin (also the company's tokens and settings).")
        var scope = TokenScope.write

        func run() async throws {
            let (tokenID, token) = try await withDatabase("surveyd.token") { database in
                try await CompanyRepository(database: database).createToken(company: CompanyID(company), scope: scope)
            }
            print("API token \(tokenID) (\(scope.rawValue)) for company \(company), shown only now; keep it secret:")
            print(token.secret)
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke an API token; it stops working at once.")

        @Argument(help: "The token's id.")
        var id: Int64

        func run() async throws {
            try await withDatabase("surveyd.token") { database in
                let companies = CompanyRepository(database: database)
                guard let company = try await companies.company(ofToken: TokenID(id)) else {
                    throw ValidationError("no token \(id)")
                }
                try await companies.revokeToken(TokenID(id), company: company)
            }
            print("Token \(id) revoked.")
        }
    }
}

extension TokenScope: ExpressibleByArgument {}
