import APITestSupport
import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Postgres
import SMSGateway
import SurveyAPI
import SurveyDomain
import SurveyStorage
import SurveyWorker
import WebhookSender
import ServiceLifecycle
import TestSupport
import Testing

/// A whole installation for one test: its own migrated database (a worker takes every job
/// it can see), the API as `serve` builds it, workers, and a fake Twilio gateway.
struct Pipeline {
    static let publicBaseURL = "http://surveyd.test"
    static let sender = "+3288000"
    static let hashKey = String(repeating: "7e", count: 32)
    static let hasher = try! DestinationHasher(hexKey: hashKey)

    let url: String
    let database: Database
    let workerPool: PostgresClient
    let superuser: PostgresClient
    let gateway: FakeTwilio
    let httpClient: HTTPClient
    /// The API's webhook sender (`/test`, `/retry`); private addresses allowed, as the
    /// tests' receiver is local.
    let webhookSender: WebhookSender
    /// Every component's logger: tests can capture what the whole installation logs.
    let logger: Logger

    static func make(_ label: String, logger: Logger = TestDatabase.logger) async throws -> Pipeline {
        let url = try await TestDatabase.migratedScratchDatabase(label)
        var superuserConfiguration = PostgresClient.Configuration(connection: .init(url: url, applicationName: "tests-superuser"))
        superuserConfiguration.maximumConnections = 2
        return Pipeline(
            url: url,
            database: Database(client: Database.applicationPool(
                url: url, applicationName: "surveyd-serve", maximumConnections: 8, logger: logger)),
            workerPool: Database.applicationPool(
                url: url, applicationName: "surveyd-worker", role: .worker, maximumConnections: 4, logger: logger),
            superuser: PostgresClient(configuration: superuserConfiguration, logger: TestDatabase.logger),
            gateway: try await FakeTwilio.start(),
            httpClient: HTTPClient(eventLoopGroupProvider: .singleton),
            webhookSender: WebhookSender(configuration: Self.webhookSenderConfiguration, logger: logger),
            logger: logger)
    }

    /// A pipeline for `body`, closed however `body` ends (an HTTP client left open when a
    /// test throws would abort the whole test process).
    static func with<Value>(_ label: String, _ body: (Pipeline) async throws -> Value) async throws -> Value {
        let pipeline = try await make(label)
        do {
            let value = try await body(pipeline)
            await pipeline.close()
            return value
        } catch {
            await pipeline.close()
            throw error
        }
    }

    func close() async {
        gateway.stop()
        try? await httpClient.shutdown()
        await webhookSender.shutdown()
        await database.client.shutDown()
        await workerPool.shutDown()
        await superuser.shutDown()
    }

    var apiConfiguration: APIConfiguration {
        APIConfiguration(
            adminToken: nil, destinationHasher: Self.hasher,
            webhooks: .init(authToken: FakeTwilio.authToken, accountSID: FakeTwilio.accountSID, publicBaseURL: Self.publicBaseURL),
            companyWebhooks: .init(sender: webhookSender, resolver: SystemHostResolver(), allowPrivateAddresses: true),
            limits: .init(
                perToken: RateLimit(ratePerSecond: 1_000_000, burst: 1_000_000),
                perCompany: RateLimit(ratePerSecond: 1_000_000, burst: 1_000_000),
                failedAuthentication: RateLimit(ratePerSecond: 1_000_000, burst: 1_000_000)))
    }

    /// The API as `serve` builds it; `live`: served on a port (the fake gateway's calls
    /// fetch its TwiML over HTTP, as Twilio would).
    func api<Value: Sendable>(
        live: Bool = false, _ body: @Sendable (any TestClientProtocol) async throws -> Value
    ) async throws -> Value {
        try await Application(
            router: buildRouter(
                configuration: apiConfiguration, database: database,
                components: APIComponents(database: database, logger: logger)),
            logger: logger
        ).testContract(live ? .live : .router) { client in try await body(client) }
    }

    func company() async throws -> (id: CompanyID, headers: HTTPFields) {
        let (company, _, token) = try await CompanyRepository(database: database).create(name: "Pipeline company", settings: .alwaysOpen)
        return (company.id, [.authorization: "Bearer \(token.secret)", .contentType: "application/json"])
    }

    /// Creates a survey and sends it to `numbers`; returns the request ids in order.
    func send(
        to numbers: [String], headers: HTTPFields, client: any TestClientProtocol,
        body: String = "How likely are you to recommend us, 0-10?", idempotencyKey: String? = nil
    ) async throws -> [Int] {
        var sendHeaders = headers
        if let idempotencyKey { sendHeaders[HTTPField.Name("Idempotency-Key")!] = idempotencyKey }
        let created = try await client.execute(
            uri: "/survey/1.0.0/surveys", method: .post, headers: headers,
            body: ByteBuffer(string: #"{"name":"n","interactionType":"t","questions":[{"body":"\#(body)","language":"en"}]}"#))
        let survey = try #require(try JSONSerialization.jsonObject(with: Data(created.body.readableBytesView)) as? [String: Any])["id"] as! Int
        let items = numbers.map { #"{"channel":"SMS","destination":"\#($0)","segments":["vip"]}"# }.joined(separator: ",")
        let response = try await client.execute(
            uri: "/survey/1.0.0/surveys/\(survey)/send", method: .post, headers: sendHeaders,
            body: ByteBuffer(string: #"{"requests":[\#(items)]}"#))
        #expect(response.status == .accepted)
        let results = try #require(try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any])["results"] as! [[String: Any]]
        return results.compactMap { $0["requestId"] as? Int }
    }

    func provider(timeout: Duration = .seconds(5)) -> TwilioProvider {
        TwilioProvider(
            configuration: .init(
                apiBaseURL: gateway.baseURL, accountSID: FakeTwilio.accountSID, authToken: FakeTwilio.authToken, from: Self.sender,
                statusCallback: Self.publicBaseURL + "/webhooks/twilio/status", timeout: timeout),
            client: httpClient, logger: logger)
    }

    static var fastWorker: SendWorker.Configuration {
        var configuration = SendWorker.Configuration()
        configuration.pollInterval = .milliseconds(100)
        configuration.ratePerSecond = 5000
        configuration.retry = RetryPolicy(maximumAttempts: 4, maximumAge: .seconds(60), baseDelay: .milliseconds(50), maximumDelay: .milliseconds(200))
        configuration.reapInterval = .milliseconds(200)
        return configuration
    }

    func worker(_ configuration: SendWorker.Configuration = Pipeline.fastWorker, provider: (any SMSProvider)? = nil) -> SendWorker {
        SendWorker(
            queue: QueueRepository(database: Database(client: workerPool), policy: SendingPolicy()), client: workerPool,
            provider: provider ?? self.provider(), configuration: configuration, logger: logger)
    }

    /// The worker process's janitor, applying early callbacks at once rather than every 2 s.
    func janitor() -> RoutingJanitor {
        var configuration = RoutingJanitor.Configuration()
        configuration.applyInterval = .milliseconds(50)
        return RoutingJanitor(database: Database(client: workerPool), configuration: configuration, logger: logger)
    }

    /// Runs workers until `done` holds (or the timeout), then shuts them down gracefully.
    func run(
        _ workers: [SendWorker], alongside others: [any Service] = [], timeout: Duration = .seconds(20),
        until done: @Sendable () async throws -> Bool
    ) async throws {
        let services = workers.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) } + others.map { .init(service: $0) }
        let group = ServiceGroup(configuration: .init(services: services, logger: logger))
        let running = Task { try await group.run() }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, !(try await done()) {
            try await Task.sleep(for: .milliseconds(50))
        }
        await group.triggerGracefulShutdown()
        try await running.value
    }

    static var webhookSenderConfiguration: WebhookSender.Configuration {
        var configuration = WebhookSender.Configuration()
        configuration.allowPrivateAddresses = true
        configuration.timeout = .seconds(2)
        return configuration
    }

    /// A webhook dispatcher as the worker runs one, with a schedule of milliseconds.
    func dispatcher(
        _ configure: (inout WebhookDispatcher.Configuration) -> Void = { _ in },
        sender: WebhookSender? = nil
    ) -> WebhookDispatcher {
        var configuration = WebhookDispatcher.Configuration()
        configuration.pollInterval = .milliseconds(100)
        configuration.expirySweepInterval = .milliseconds(200)
        configuration.lease = .seconds(10)
        configuration.retrySchedule = WebhookRetrySchedule(steps: [.milliseconds(200), .milliseconds(300), .milliseconds(400)])
        configure(&configuration)
        return WebhookDispatcher(
            database: Database(client: workerPool),
            sender: sender ?? WebhookSender(configuration: Self.webhookSenderConfiguration, logger: logger),
            configuration: configuration, logger: logger)
    }

    func jobsLeft() async throws -> Int {
        try await superuser.withConnection { try await $0.query("SELECT count(*)::int FROM sms_jobs").one().decode(Int.self) }
    }

    func request(_ id: Int) async throws -> (status: String, failure: String?, score: Int?, badReplies: Int, messageID: String?, segments: Int?) {
        try await superuser.withConnection { connection in
            try await connection.query(
                """
                SELECT status, failure, score::int, bad_replies, provider_message_id, sms_segments
                  FROM survey_requests WHERE request_id = \(id)
                """
            ).one().decode((String, String?, Int?, Int, String?, Int?).self)
        }
    }

    /// A message id of Twilio's shape, new each time.
    static func messageSID() -> String {
        "SM" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
    }

    /// Posts a webhook signed as the provider signs it, naming our account as Twilio does
    /// (unless the parameters name one themselves, or `account` is nil).
    func webhook(
        _ path: String, _ parameters: [(String, String)], client: any TestClientProtocol, signature: String? = nil,
        account: String? = FakeTwilio.accountSID
    ) async throws -> TestResponse {
        var parameters = parameters
        if let account, !parameters.contains(where: { $0.0 == "AccountSid" }) { parameters.append(("AccountSid", account)) }
        let url = Self.publicBaseURL + path
        let signed = signature ?? TwilioSignature.sign(url: url, parameters: parameters, authToken: FakeTwilio.authToken)
        return try await client.execute(
            uri: path, method: .post,
            headers: [.contentType: "application/x-www-form-urlencoded", HTTPField.Name("X-Twilio-Signature")!: signed],
            body: ByteBuffer(string: FormURLEncoding.encode(parameters)))
    }

    func reply(from number: String, _ body: String, client: any TestClientProtocol, sid: String = Pipeline.messageSID()) async throws -> TestResponse {
        try await webhook(
            "/webhooks/twilio/sms", [("MessageSid", sid), ("From", number), ("To", Self.sender), ("Body", body)], client: client)
    }

    /// Every row of every table, as JSON text.
    func dump() async throws -> String {
        try await superuser.withConnection { connection in
            let tables = try await connection.query(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").map { try $0.decode(String.self) }
            var text = ""
            for table in tables {
                for row in try await connection.query("SELECT row_to_json(t)::text FROM \(identifier: table) AS t") {
                    text += table + " " + (try row.decode(String.self)) + "\n"
                }
            }
            return text
        }
    }
}

func phone() -> String { "+3247\(UInt32.random(in: 1_000_000...9_999_999))" }
