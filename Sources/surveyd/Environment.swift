import Foundation
import AsyncHTTPClient
import NIOCore
import Logging
import MailTransport
import NIOSSL
import SMSGateway
import SurveyAPI
import SurveyDomain
import Telemetry

/// Settings read from the environment (12-factor), with the errors a user can act on.
enum Environment {
    struct Missing: Error, CustomStringConvertible {
        let name: String
        let hint: String
        var description: String { "\(name) is not set: \(hint)" }
    }

    struct Invalid: Error, CustomStringConvertible {
        let name: String
        let hint: String
        var description: String { "\(name) is invalid: \(hint)" }
    }

    static func value(_ name: String) -> String? {
        ProcessInfo.processInfo.environment[name].flatMap { $0.isEmpty ? nil : $0 }
    }

    static func databaseURL() throws -> String {
        guard let url = value("DATABASE_URL") else {
            throw Missing(name: "DATABASE_URL", hint: "a libpq URI such as postgresql://user@host/db")
        }
        return url
    }

    /// The pool size, `DATABASE_MAX_CONNECTIONS`, else the command's default.
    static func maximumConnections(default value: Int) throws -> Int {
        try integer("DATABASE_MAX_CONNECTIONS", default: value, range: 1...500)
    }

    /// How many requests may wait for a pooled connection (`DATABASE_POOL_MAX_WAITERS`) and
    /// for how long (`DATABASE_POOL_WAIT_TIMEOUT_MS`) before being answered 503.
    static func poolWaiting() throws -> (maximumWaiters: Int, waitTimeout: Duration) {
        let waiters = try integer("DATABASE_POOL_MAX_WAITERS", default: 1000, range: 0...1_000_000)
        let timeout = try integer("DATABASE_POOL_WAIT_TIMEOUT_MS", default: 5000, range: 1...600_000)
        return (waiters, .milliseconds(timeout))
    }

    /// The key of the phone-number hashes; `serve` and `worker` refuse to start without it.
    static func destinationHasher() throws -> DestinationHasher {
        try DestinationHasher(hexKey: value("DESTINATION_HASH_KEY"))
    }

    /// A port that may be left unset (e.g. `METRICS_PORT`).
    static func optionalPort(_ name: String) throws -> Int? {
        guard let text = value(name) else { return nil }
        guard let port = Int(text), (1...65535).contains(port) else {
            throw Invalid(name: name, hint: "must be a port number from 1 to 65535")
        }
        return port
    }

    static func port() throws -> Int {
        guard let port = Int(value("PORT") ?? "8080"), (1...65535).contains(port) else {
            throw Invalid(name: "PORT", hint: "must be a port number from 1 to 65535")
        }
        return port
    }

    /// Where the provider reaches us; part of what webhook signatures cover.
    static func publicBaseURL(port: Int) -> String {
        let url = value("PUBLIC_BASE_URL") ?? "http://localhost:\(port)"
        return url.hasSuffix("/") ? String(url.dropLast()) : url
    }

    /// The e-mail channel's relay and sender, or `nil` when `SMTP_URL` is unset (no e-mail
    /// is sent then: e-mail jobs wait, and fail as `expired` past the maximum age).
    static func mail(concurrency: Int) throws -> (SMTPConfiguration, from: String)? {
        guard let url = value("SMTP_URL") else { return nil }
        var configuration: SMTPConfiguration
        do {
            configuration = try SMTPConfiguration(url: url, clientName: ProcessInfo.processInfo.hostName)
        } catch let error as MailError {
            throw Invalid(name: "SMTP_URL", hint: error.detail)
        }
        if let file = value("SMTP_CA_FILE") {
            do {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(file))
            } catch {
                throw Invalid(name: "SMTP_CA_FILE", hint: "must be a readable PEM file of certificates (\(file))")
            }
        }
        configuration.maximumConnections = concurrency
        guard let from = value("MAIL_FROM") else {
            throw Missing(name: "MAIL_FROM", hint: "the address surveys are sent from, e.g. surveys@example.com")
        }
        guard (try? EmailAddress(parsing: from)) != nil else {
            throw Invalid(name: "MAIL_FROM", hint: "must be an e-mail address such as surveys@example.com, got \(from)")
        }
        return (configuration, from)
    }

    /// A whole number: `1.5` or `1e3` is refused rather than rounded.
    static func integer(_ name: String, default defaultValue: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = value(name) else { return defaultValue }
        guard let number = Int(text), range.contains(number) else {
            throw Invalid(name: name, hint: "must be a whole number from \(range.lowerBound) to \(range.upperBound), got \(text)")
        }
        return number
    }

    static func double(_ name: String, default defaultValue: Double, range: ClosedRange<Double>) throws -> Double {
        guard let text = value(name) else { return defaultValue }
        guard let number = Double(text), range.contains(number) else {
            throw Invalid(name: name, hint: "must be a number from \(range.lowerBound) to \(range.upperBound), got \(text)")
        }
        return number
    }

    /// `WEBHOOK_ALLOW_PRIVATE_URLS`: 1 (or true) allows, 0 or unset does not; anything else is refused.
    static func allowPrivateWebhookURLs() throws -> Bool {
        try flag("WEBHOOK_ALLOW_PRIVATE_URLS", default: false)
    }

    /// Whether `serve` batches its tenant reads (`DATABASE_BATCH_READS`, on by default; off
    /// on Citus, which forwards `SET LOCAL` to its workers but not `set_config`).
    static func batchingReads() throws -> Bool {
        try flag("DATABASE_BATCH_READS", default: true)
    }

    static func flag(_ name: String, default: Bool) throws -> Bool {
        switch value(name)?.lowercased() {
        case nil: return `default`
        case "0", "false": return false
        case "1", "true": return true
        case let other?: throw Invalid(name: name, hint: "must be 0 or 1, got \(other)")
        }
    }

    static func sendingPolicy() throws -> SendingPolicy {
        let hours = try double("RESPONSE_WINDOW_HOURS", default: 72, range: 1...720)
        return SendingPolicy(responseWindow: .seconds(Int(hours * 3600)))
    }

    /// The API's rate limits: per token (`RATE_LIMIT_PER_SECOND`, `RATE_LIMIT_BURST`), per
    /// company unless it has its own (`COMPANY_RATE_LIMIT_PER_SECOND`, `COMPANY_RATE_LIMIT_BURST`), and
    /// for failed authentications per client address (`AUTH_FAILURES_PER_MINUTE`,
    /// `AUTH_FAILURE_BURST`), and whether the address comes from `X-Forwarded-For`
    /// (`TRUST_X_FORWARDED_FOR=1`, only behind a load balancer that sets it).
    static func limits() throws -> APIConfiguration.Limits {
        let defaults = APIConfiguration.Limits()
        let rate = try double("RATE_LIMIT_PER_SECOND", default: defaults.perToken.ratePerSecond, range: 0.01...1_000_000)
        let burst = try integer("RATE_LIMIT_BURST", default: defaults.perToken.burst, range: 1...10_000_000)
        let companyRate = try double(
            "COMPANY_RATE_LIMIT_PER_SECOND", default: defaults.perCompany.ratePerSecond, range: 0.01...1_000_000)
        let companyBurst = try integer("COMPANY_RATE_LIMIT_BURST", default: defaults.perCompany.burst, range: 1...10_000_000)
        let failures = try double(
            "AUTH_FAILURES_PER_MINUTE", default: defaults.failedAuthentication.ratePerSecond * 60, range: 0.01...1_000_000)
        let failureBurst = try integer("AUTH_FAILURE_BURST", default: defaults.failedAuthentication.burst, range: 1...10_000_000)
        let trust = value("TRUST_X_FORWARDED_FOR")
        guard trust == nil || trust == "0" || trust == "1" else {
            throw Invalid(name: "TRUST_X_FORWARDED_FOR", hint: "must be 0 or 1")
        }
        let requestTimeout = try double("REQUEST_TIMEOUT_SECONDS", default: 30, range: 1...600)
        let idleTimeout = try double("IDLE_TIMEOUT_SECONDS", default: 60, range: 1...3600)
        let receiveTimeout = try double("REQUEST_RECEIVE_TIMEOUT_SECONDS", default: 10, range: 0.1...3600)
        let connections = try integer("MAX_CONNECTIONS", default: defaults.maximumConnections, range: 1...1_000_000)
        let perAddress = try integer(
            "MAX_CONNECTIONS_PER_ADDRESS", default: defaults.maximumConnectionsPerAddress, range: 1...1_000_000)
        return APIConfiguration.Limits(
            perToken: RateLimit(ratePerSecond: rate, burst: burst),
            perCompany: RateLimit(ratePerSecond: companyRate, burst: companyBurst),
            failedAuthentication: RateLimit(ratePerSecond: failures / 60, burst: failureBurst),
            trustForwardedFor: trust == "1", requestTimeout: .milliseconds(Int64(requestTimeout * 1000)),
            idleTimeout: .milliseconds(Int64(idleTimeout * 1000)), receiveTimeout: .milliseconds(Int64(receiveTimeout * 1000)),
            maximumConnections: connections, maximumConnectionsPerAddress: perAddress)
    }

    /// Our account at Twilio: webhooks naming another account are refused, so `serve` needs
    /// it whenever it checks webhooks.
    /// File descriptors this process may open (its soft limit), if the system says.
    static func fileDescriptorLimit() -> Int? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(Int32.max) else { return nil }
        return Int(clamping: limit.rlim_cur)
    }

    static func twilioAccountSID() throws -> String {
        guard let sid = value("TWILIO_ACCOUNT_SID") else {
            throw Missing(name: "TWILIO_ACCOUNT_SID", hint: "the account (AC followed by 32 hex digits) whose webhooks are accepted")
        }
        guard TwilioWebhook.isAccountSID(sid) else {
            throw Invalid(name: "TWILIO_ACCOUNT_SID", hint: "must be AC followed by 32 lowercase hexadecimal digits")
        }
        return sid
    }

    static func twilio() throws -> TwilioProvider.Configuration {
        func required(_ name: String) throws -> String {
            guard let text = value(name) else { throw Missing(name: name, hint: "needed with SMS_PROVIDER=twilio") }
            return text
        }
        return TwilioProvider.Configuration(
            apiBaseURL: value("TWILIO_API_BASE_URL") ?? "https://api.twilio.com", accountSID: try required("TWILIO_ACCOUNT_SID"),
            authToken: try required("TWILIO_AUTH_TOKEN"), from: try required("SMS_SENDER"),
            // Without a public URL the provider cannot reach us: no delivery callbacks then.
            statusCallback: value("PUBLIC_BASE_URL") == nil ? nil : publicBaseURL(port: 0) + "/webhooks/twilio/status")
    }

    static func httpClientConfiguration(_ concurrency: Int) -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = concurrency
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(15))
        return configuration
    }

    static func migrationDatabaseURL() throws -> String {
        try value("MIGRATION_DATABASE_URL") ?? databaseURL()
    }

    /// Where the migration files are: `SURVEYD_SQL_DIR`, else `./sql`, else
    /// `<executable>/../share/surveyd/sql`.
    static func sqlDirectory() -> String {
        if let directory = value("SURVEYD_SQL_DIR") { return directory }
        if FileManager.default.fileExists(atPath: "sql") { return "sql" }
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        return executable.deletingLastPathComponent().appendingPathComponent("../share/surveyd/sql").path
    }

    /// The dashboard's templates and assets: `SURVEYD_DASHBOARD_DIR`, else `dashboard` in
    /// the working directory (a checkout), else next to the installed binary.
    static func dashboardDirectory() -> String {
        if let directory = value("SURVEYD_DASHBOARD_DIR") { return directory }
        if FileManager.default.fileExists(atPath: "dashboard/templates") { return "dashboard" }
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        return executable.deletingLastPathComponent().appendingPathComponent("../share/surveyd/dashboard").path
    }

    /// The contract served at `/openapi.yaml`: `SURVEYD_OPENAPI`, else `openapi.yaml` in the
    /// working directory (a checkout), else next to the installed binary.
    static func openAPIPath() -> String {
        if let path = value("SURVEYD_OPENAPI") { return path }
        if FileManager.default.fileExists(atPath: "openapi.yaml") { return "openapi.yaml" }
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        return executable.deletingLastPathComponent().appendingPathComponent("../share/surveyd/openapi.yaml").path
    }

    /// How long a graceful shutdown may take (`SHUTDOWN_GRACE_SECONDS`): below an
    /// orchestrator's own limit (Kubernetes waits 30 s before SIGKILL).
    static func shutdownGrace() throws -> Duration {
        .milliseconds(Int64(try double("SHUTDOWN_GRACE_SECONDS", default: 20, range: 1...3600) * 1000))
    }

    static func logger(_ label: String) -> Logger {
        _ = bootstrapLogging
        var logger = Logger(label: label)
        logger.logLevel = value("LOG_LEVEL").flatMap(Logger.Level.init(rawValue:)) ?? .info
        return logger
    }

    /// `LOG_FORMAT=json` writes one JSON object per line to standard output; the default
    /// is text lines on standard error. Done once, before the first logger is made.
    private static let bootstrapLogging: Void = {
        switch value("LOG_FORMAT") {
        case "json":
            LoggingSystem.bootstrap { label in LineLogHandler(label: label, format: .json) }
        case nil, "text":
            LoggingSystem.bootstrap { label in LineLogHandler(label: label, format: .text) }
        case let other?:
            LoggingSystem.bootstrap { label in LineLogHandler(label: label, format: .text) }
            FileHandle.standardError.write(Data("LOG_FORMAT=\(other) is not known; use json or text. Logging as text.\n".utf8))
        }
    }()
}
