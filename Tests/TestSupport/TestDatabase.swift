import Foundation
import Logging
import NIOPosix
import Postgres
import SurveyStorage

/// The PostgreSQL server the tests run against: `TEST_DATABASE_URL`, a superuser
/// connection to a fresh database that `scripts/test` creates. Tests never mock it.
public enum TestDatabase {
    public struct NotConfigured: Error, CustomStringConvertible {
        public var description: String {
            "TEST_DATABASE_URL is not set: run the tests with scripts/test, which starts a private PostgreSQL"
        }
    }

    public static let logger: Logger = {
        var logger = Logger(label: "tests")
        logger.logLevel = .warning
        return logger
    }()

    public static func url() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["TEST_DATABASE_URL"], !url.isEmpty else {
            throw NotConfigured()
        }
        return url
    }

    /// The same server, another database.
    public static func url(database: String) throws -> String {
        guard var components = URLComponents(string: try url()) else { throw NotConfigured() }
        components.path = "/" + database
        return components.string!
    }

    /// The repository's `sql/` folder.
    public static let sqlDirectory: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("sql").path

    /// A superuser pool on the test database, for setting up and checking what the code under
    /// test cannot see.
    public static func superuser() async throws -> PostgresClient {
        try await Shared.instance.superuser()
    }

    /// The test database, migrated, seen through a pool that runs as `survey_app` exactly as
    /// `serve` does.
    public static func application() async throws -> Database {
        try await Shared.instance.application()
    }

    /// A new, empty database on the same server, for tests that need a schema of their own.
    public static func scratchDatabase(_ label: String) async throws -> String {
        let name = "scratch_\(label)_\(UInt32.random(in: 0...UInt32.max))"
        try await superuser().withConnection { try await $0.simpleQuery("CREATE DATABASE \(name)") }
        return try url(database: name)
    }

    /// A new database with the schema migrated, for tests that need the whole database to
    /// themselves (a worker takes every job it can see).
    public static func migratedScratchDatabase(_ label: String) async throws -> String {
        let url = try await scratchDatabase(label)
        let connection = try await connect(url: url, applicationName: "surveyd-migrate")
        do {
            try await Migrator(directory: sqlDirectory).migrate(on: connection, logger: logger)
        } catch {
            await connection.close()
            throw error
        }
        await connection.close()
        return url
    }

    /// A single connection, outside any pool, with a thread of its own (as `surveyd migrate`
    /// has): connections sharing a few threads could starve each other while the server
    /// makes them wait on each other's locks.
    public static func connect(url: String, applicationName: String = "surveyd-tests") async throws -> PostgresConnection {
        let thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        do {
            return try await PostgresConnection.connect(
                configuration: .init(url: url, applicationName: applicationName), threadPool: thread, ownsThreadPool: true,
                logger: logger)
        } catch {
            try? await thread.shutdownGracefully()
            throw error
        }
    }
}

private actor Shared {
    static let instance = Shared()

    private var superuserClient: PostgresClient?
    private var applicationDatabase: Task<Database, any Error>?

    func superuser() throws -> PostgresClient {
        if let superuserClient { return superuserClient }
        var configuration = PostgresClient.Configuration(connection: .init(url: try TestDatabase.url(), applicationName: "surveyd-tests-superuser"))
        configuration.maximumConnections = 6
        // Shared by every test running at once, some creating scratch databases (seconds
        // each on a loaded machine): waiting for a connection is not what any test tests.
        configuration.waitTimeout = .seconds(120)
        let client = PostgresClient(configuration: configuration, logger: TestDatabase.logger)
        superuserClient = client
        return client
    }

    func application() async throws -> Database {
        if let applicationDatabase { return try await applicationDatabase.value }
        let url = try TestDatabase.url()
        let task = Task {
            let connection = try await TestDatabase.connect(url: url, applicationName: "surveyd-migrate")
            try await Migrator(directory: TestDatabase.sqlDirectory).migrate(on: connection, logger: TestDatabase.logger)
            await connection.close()
            return Database(client: Database.applicationPool(
                url: url, applicationName: "surveyd-serve", maximumConnections: 8, waitTimeout: .seconds(120),
                logger: TestDatabase.logger))
        }
        applicationDatabase = task
        return try await task.value
    }
}
