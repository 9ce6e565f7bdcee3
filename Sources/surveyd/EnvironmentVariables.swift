import Foundation

/// Every environment variable `surveyd` reads, with its default, as `--help` lists them.
/// `SurveydCommandTests` checks that each name the sources read is listed here.
enum EnvironmentVariables {
    struct Variable {
        var name: String
        /// What happens when it is unset.
        var whenUnset: String
        var meaning: String
    }

    static let all: [Variable] = [
        .init(name: "DATABASE_URL", whenUnset: "required", meaning: "libpq URI of the database (serve, worker, company, token)"),
        .init(name: "REPORTS_DATABASE_URL", whenUnset: "reports read the primary", meaning: "libpq URI of a hot standby the reports, trends and dashboard overviews read from while it is fresh (serve)"),
        .init(name: "REPORTS_REPLICA_MAX_LAG_SECONDS", whenUnset: "30", meaning: "a standby further behind than this is left for the primary"),
        .init(name: "REPORTS_DATABASE_MAX_CONNECTIONS", whenUnset: "8", meaning: "pooled connections to the reports standby"),
        .init(name: "MIGRATION_DATABASE_URL", whenUnset: "DATABASE_URL", meaning: "libpq URI for migrate (a role that owns the schema)"),
        .init(name: "DATABASE_MAX_CONNECTIONS", whenUnset: "20 (serve), 4 (worker)", meaning: "pooled connections"),
        .init(name: "DATABASE_BATCH_READS", whenUnset: "1", meaning: "0: each tenant read on a connection of its own, with SET LOCAL (Citus); 1: reads arriving together share a round trip (serve)"),
        .init(name: "DATABASE_POOL_MAX_WAITERS", whenUnset: "1000", meaning: "requests that may wait for a connection (503 beyond)"),
        .init(name: "DATABASE_POOL_WAIT_TIMEOUT_MS", whenUnset: "5000", meaning: "longest wait for a pooled connection"),
        .init(name: "DESTINATION_HASH_KEY", whenUnset: "required", meaning: "64 hex digits keying the phone-number hashes; never change it"),
        .init(name: "HOST", whenUnset: "0.0.0.0", meaning: "address to listen on"),
        .init(name: "PORT", whenUnset: "8080", meaning: "API port (serve; sms reply posts to it)"),
        .init(name: "PUBLIC_BASE_URL", whenUnset: "http://localhost:PORT", meaning: "URL the provider and customers reach us at (webhook signatures, status callbacks, e-mail score links)"),
        .init(name: "ADMIN_TOKEN", whenUnset: "admin API disabled", meaning: "bearer token of the operator's /admin API"),
        .init(name: "SMS_PROVIDER", whenUnset: "required (worker)", meaning: "twilio, console (only logs; development) or accept-all (benchmarks)"),
        .init(name: "SMS_SENDER", whenUnset: "required with twilio", meaning: "our sender number or id"),
        .init(name: "SMS_RATE_LIMIT", whenUnset: "100", meaning: "messages per second towards the provider"),
        .init(name: "SMS_BATCH_SIZE", whenUnset: "500", meaning: "jobs claimed at once"),
        .init(name: "SMS_CONCURRENCY", whenUnset: "64", meaning: "messages in flight to the provider at once"),
        .init(name: "SMS_LEASE_SECONDS", whenUnset: "120", meaning: "how long a claim holds"),
        .init(name: "SMS_LANES", whenUnset: "2", meaning: "claim-send-record loops side by side"),
        .init(name: "VOICE_RATE_LIMIT", whenUnset: "10", meaning: "calls per second placed through the provider"),
        .init(name: "VOICE_CONCURRENCY", whenUnset: "8", meaning: "calls being placed at once (the provider's API calls, not the calls' length)"),
        .init(name: "SMTP_URL", whenUnset: "no e-mail is sent (worker)", meaning: "the mail relay: smtp://user:password@host:587 (STARTTLS), smtps://…:465 (TLS), smtp://localhost:1025 (a local catcher)"),
        .init(name: "SMTP_CA_FILE", whenUnset: "the system's roots", meaning: "PEM certificates the relay's TLS certificate must chain to (a private relay)"),
        .init(name: "MAIL_FROM", whenUnset: "required with SMTP_URL", meaning: "the surveys' sender address (envelope and From:)"),
        .init(name: "EMAIL_RATE_LIMIT", whenUnset: "1000", meaning: "e-mails per second towards the relay"),
        .init(name: "EMAIL_CONCURRENCY", whenUnset: "16", meaning: "e-mails in flight at once, each on its own SMTP connection"),
        .init(name: "TWILIO_ACCOUNT_SID", whenUnset: "required with TWILIO_AUTH_TOKEN", meaning: "our Twilio account (AC…); webhooks naming another are refused"),
        .init(name: "TWILIO_AUTH_TOKEN", whenUnset: "webhooks disabled (serve)", meaning: "signs the provider's webhooks; authenticates the worker's sends"),
        .init(name: "TWILIO_API_BASE_URL", whenUnset: "https://api.twilio.com", meaning: "the Messages API (a compatible gateway in tests)"),
        .init(name: "RESPONSE_WINDOW_HOURS", whenUnset: "72", meaning: "how long a survey waits for its answer"),
        .init(name: "RATE_LIMIT_PER_SECOND", whenUnset: "50", meaning: "requests per second per API token"),
        .init(name: "RATE_LIMIT_BURST", whenUnset: "100", meaning: "burst per API token"),
        .init(name: "COMPANY_RATE_LIMIT_PER_SECOND", whenUnset: "200", meaning: "requests per second per company, all its tokens together (the admin API sets one company's own)"),
        .init(name: "COMPANY_RATE_LIMIT_BURST", whenUnset: "400", meaning: "burst per company"),
        .init(name: "AUTH_FAILURES_PER_MINUTE", whenUnset: "10", meaning: "failed authentications per client address"),
        .init(name: "AUTH_FAILURE_BURST", whenUnset: "20", meaning: "burst of failed authentications"),
        .init(name: "TRUST_X_FORWARDED_FOR", whenUnset: "0", meaning: "1: the client address is X-Forwarded-For's last entry"),
        .init(name: "REQUEST_TIMEOUT_SECONDS", whenUnset: "30", meaning: "a request's deadline (503 past it)"),
        .init(name: "SHUTDOWN_GRACE_SECONDS", whenUnset: "20", meaning: "after SIGTERM, in-flight work may finish within it; then the process ends (serve, worker)"),
        .init(name: "IDLE_TIMEOUT_SECONDS", whenUnset: "60", meaning: "an idle keep-alive connection is closed after it"),
        .init(name: "REQUEST_RECEIVE_TIMEOUT_SECONDS", whenUnset: "10", meaning: "a request's head and body must arrive within it (408 then close)"),
        .init(name: "MAX_CONNECTIONS", whenUnset: "10000", meaning: "open connections to serve at once; more are refused"),
        .init(name: "MAX_CONNECTIONS_PER_ADDRESS", whenUnset: "256", meaning: "open connections from one client address"),
        .init(name: "WEBHOOK_ALLOW_PRIVATE_URLS", whenUnset: "0", meaning: "1: company webhooks may use http and private or loopback addresses (development, tests only)"),
        .init(name: "WEBHOOK_CONCURRENCY", whenUnset: "512", meaning: "worker: webhook attempts under way at once"),
        .init(name: "WEBHOOK_COMPANY_CONCURRENCY", whenUnset: "64", meaning: "webhook attempts under way at once for one company's endpoints, across workers"),
        .init(name: "WEBHOOK_ENDPOINT_CONCURRENCY", whenUnset: "16", meaning: "webhook attempts under way at once to one endpoint, across workers"),
        .init(name: "WEBHOOK_LEASE_SECONDS", whenUnset: "60", meaning: "worker: how long a webhook attempt's claim holds (a killed worker's attempt is made again after it)"),
        .init(name: "WEBHOOK_DATABASE_CONNECTIONS", whenUnset: "2", meaning: "worker: the webhook dispatcher's own pooled connections (apart from SMS)"),
        .init(name: "METRICS_PORT", whenUnset: "none", meaning: "worker: port of /health, /ready and /metrics"),
        .init(name: "SURVEYD_SQL_DIR", whenUnset: "./sql, else ../share/surveyd/sql", meaning: "the migration files"),
        .init(name: "SURVEYD_DASHBOARD_DIR", whenUnset: "./dashboard, else ../share/surveyd/dashboard", meaning: "the dashboard's templates and assets"),
        .init(name: "SURVEYD_OPENAPI", whenUnset: "./openapi.yaml, else ../share/surveyd/openapi.yaml", meaning: "the contract served at /openapi.yaml"),
        .init(name: "LOG_LEVEL", whenUnset: "info", meaning: "trace, debug, info, notice, warning, error or critical"),
        .init(name: "LOG_FORMAT", whenUnset: "text", meaning: "text (standard error) or json (standard output)"),
    ]

    /// The list as `--help` prints it.
    static var help: String {
        let width = all.map(\.name.count).max() ?? 0
        return all.map { variable in
            variable.name.padding(toLength: width + 2, withPad: " ", startingAt: 0)
                + variable.meaning + " [unset: " + variable.whenUnset + "]"
        }.joined(separator: "\n")
    }
}
