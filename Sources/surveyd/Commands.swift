import ArgumentParser
import Logging
import NIOPosix
import Postgres
import ServiceLifecycle
import SurveyAPI
import SurveyDomain
import SurveyStorage
import SurveyWorker
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
            configuration: .init(url: try Environment.migrationDatabaseURL(), applicationName: "surveyd-migrate"),
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
    static let configuration = CommandConfiguration(abstract: "Serve the HTTP API (HOST, PORT, DATABASE_URL, ADMIN_TOKEN).")

    func run() async throws {
        let logger = Environment.logger("surveyd.serve")
        guard let port = Int(Environment.value("PORT") ?? "8080"), (1...65535).contains(port) else {
            throw Environment.Invalid(name: "PORT", hint: "must be a port number from 1 to 65535")
        }
        let database = Database(client: Database.applicationPool(
            url: try Environment.databaseURL(), applicationName: "surveyd-serve",
            maximumConnections: try Environment.maximumConnections(default: 20), logger: logger))
        let configuration = APIConfiguration(
            host: Environment.value("HOST") ?? "0.0.0.0", port: port, adminToken: Environment.value("ADMIN_TOKEN"),
            destinationHasher: try Environment.destinationHasher())
        if configuration.adminToken == nil { logger.notice("ADMIN_TOKEN is not set: the admin API is disabled") }
        let application = buildApplication(configuration: configuration, database: database, logger: logger)
        try await ServiceGroup(
            configuration: .init(
                services: [.init(service: application)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        ).run()
    }
}

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "worker", abstract: "Run the SMS worker (DATABASE_URL).")

    func run() async throws {
        let logger = Environment.logger("surveyd.worker")
        _ = try Environment.destinationHasher()
        let database = Database(client: Database.applicationPool(
            url: try Environment.databaseURL(), applicationName: "surveyd-worker",
            maximumConnections: try Environment.maximumConnections(default: 4), logger: logger))
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: database.client), .init(service: Worker(database: database, logger: logger))],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
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

        func validate() throws {
            guard CompanyLimits.nameLength.contains(name.unicodeScalars.count), !name.trimmingASCIIWhitespace().isEmpty else {
                throw ValidationError("--name must be 1 to 200 characters")
            }
        }

        func run() async throws {
            let (company, tokenID, token) = try await withDatabase("surveyd.company") { database in
                try await CompanyRepository(database: database).create(name: name)
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

        func run() async throws {
            let (tokenID, token) = try await withDatabase("surveyd.token") { database in
                try await CompanyRepository(database: database).createToken(company: CompanyID(company))
            }
            print("API token \(tokenID) for company \(company), shown only now; keep it secret:")
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
