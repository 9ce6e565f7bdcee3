import ArgumentParser

@main
struct Surveyd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "NPS surveys over SMS: the API server, the SMS worker and their tools.",
        discussion: """
            Configuration comes from the environment: DATABASE_URL, MIGRATION_DATABASE_URL,
            HOST, PORT, ADMIN_TOKEN, SURVEYD_SQL_DIR, LOG_LEVEL.
            """,
        subcommands: [Migrate.self, Serve.self, WorkerCommand.self, CompanyCommand.self, TokenCommand.self])
}
