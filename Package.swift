// swift-tools-version:6.2
import PackageDescription

// Layers, each a target; dependencies point one way:
// CLibPQ → Postgres → SurveyStorage → SurveyAPI / SurveyWorker → surveyd,
// with SurveyDomain (pure, no I/O) beside them, and the outbound edges (SMSGateway,
// WebhookSender) used by the API and the worker.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "surveyd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "surveyd", targets: ["surveyd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        // libpq, found through pkg-config (apt: libpq-dev).
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"]), .brew(["libpq"])]
        ),
        // A PostgreSQL client: connections, queries, transactions, LISTEN/NOTIFY, a pool.
        // Knows nothing of surveys.
        .target(
            name: "Postgres",
            dependencies: [
                "CLibPQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Pure types and rules of the product: surveys, languages, tokens, validation. No I/O.
        .target(
            name: "SurveyDomain",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // SQL: migrations and repositories, every tenant query inside a tenant transaction.
        .target(
            name: "SurveyStorage",
            dependencies: [
                "Postgres",
                "SurveyDomain",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The HTTP API: the only target that imports Hummingbird.
        .target(
            name: "SurveyAPI",
            dependencies: [
                "SMSGateway",
                "WebhookSender",
                "SurveyDomain",
                "SurveyStorage",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Mustache", package: "swift-mustache"),
            ],
            swiftSettings: swiftSettings
        ),
        // SMS providers (Twilio's HTTP API, console, accept-all) and Twilio's webhook
        // signatures. Knows nothing of surveys or the database.
        .target(
            name: "SMSGateway",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Company webhooks on the wire: signed posts (Standard Webhooks) to checked public
        // addresses, no redirects, bounded in time and in what is read back. Knows nothing
        // of the database.
        .target(
            name: "WebhookSender",
            dependencies: [
                "SurveyDomain",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // E-mail on the wire: an SMTP client (RFC 5321: STARTTLS, AUTH, PIPELINING, reused
        // connections, a limit on every wait) and MIME messages. Knows nothing of surveys.
        .target(
            name: "MailTransport",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // The worker: the SMS queue (claims, sends, records) and company webhook deliveries.
        .target(
            name: "SurveyWorker",
            dependencies: [
                "Postgres",
                "SMSGateway",
                "MailTransport",
                "WebhookSender",
                "SurveyDomain",
                "SurveyStorage",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Operating the processes: text or JSON log lines, the Prometheus registry behind swift-metrics.
        .target(
            name: "Telemetry",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        // The one executable: a thin command line over the targets above.
        .executableTarget(
            name: "surveyd",
            dependencies: [
                "Postgres",
                "SurveyDomain",
                "SurveyStorage",
                "SurveyAPI",
                "SurveyWorker",
                "SMSGateway",
                "MailTransport",
                "WebhookSender",
                "Telemetry",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Shared by the test targets: the test database, scratch databases, an app pool.
        .target(
            name: "TestSupport",
            dependencies: [
                "Postgres",
                "SurveyDomain",
                "SurveyStorage",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        // Shared by the tests that send e-mail: a real SMTP server (scripts/smtp_sink.py).
        .target(
            name: "MailTestSupport",
            dependencies: ["MailTransport", .product(name: "NIOSSL", package: "swift-nio-ssl")],
            path: "Tests/MailTestSupport",
            swiftSettings: swiftSettings
        ),
        // Shared by the HTTP tests only: every response checked against openapi.yaml.
        .target(
            name: "APITestSupport",
            dependencies: [
                "SurveyAPI",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/APITestSupport",
            swiftSettings: swiftSettings
        ),
        // A fast stand-in for Twilio's Messages API, for benchmarks (bench/sending.py).
        .executableTarget(
            name: "fake-twilio",
            dependencies: [
                "SMSGateway", .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            path: "bench/FakeTwilioServer",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TelemetryTests",
            dependencies: [
                "Telemetry",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PostgresTests",
            dependencies: ["Postgres", "TestSupport", .product(name: "NIOPosix", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SurveyDomainTests",
            dependencies: ["SurveyDomain", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        // Against a real SMTP server: scripts/smtp_sink.py (aiosmtpd), with STARTTLS and AUTH.
        .testTarget(
            name: "MailTransportTests",
            dependencies: [
                "MailTransport", "MailTestSupport", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SMSGatewayTests",
            dependencies: ["SMSGateway"],
            swiftSettings: swiftSettings
        ),
        // Runs the built `surveyd` binary as an operator would.
        .testTarget(
            name: "CommandLineTests",
            dependencies: ["Postgres", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SurveyStorageTests",
            dependencies: ["Postgres", "SurveyDomain", "SurveyStorage", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SurveyWorkerTests",
            dependencies: ["SurveyWorker", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        // The whole pipeline against a fake Twilio gateway (a real local HTTP server).
        .testTarget(
            name: "SendingPipelineTests",
            dependencies: [
                "Postgres",
                "SMSGateway",
                "SurveyAPI",
                "SurveyDomain",
                "SurveyStorage",
                "SurveyWorker",
                "WebhookSender",
                "Telemetry",
                "TestSupport",
                "APITestSupport",
                "MailTransport",
                "MailTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SurveyAPITests",
            dependencies: [
                "WebhookSender",
                "Postgres",
                "Telemetry",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                "SurveyDomain",
                "SurveyStorage",
                "SurveyAPI",
                "TestSupport",
                "APITestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
