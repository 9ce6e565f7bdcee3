import ArgumentParser

@main
struct Surveyd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "NPS surveys over SMS: the API server, the SMS worker and their tools.",
        discussion: """
            Configuration comes from the environment (see README.md): DATABASE_URL,
            MIGRATION_DATABASE_URL, DESTINATION_HASH_KEY, HOST, PORT, ADMIN_TOKEN, SMS_PROVIDER,
            TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_API_BASE_URL, SMS_SENDER, PUBLIC_BASE_URL,
            SMS_RATE_LIMIT, RESPONSE_WINDOW_HOURS, SURVEYD_SQL_DIR, LOG_LEVEL.
            """,
        subcommands: [Migrate.self, Serve.self, WorkerCommand.self, CompanyCommand.self, TokenCommand.self, SMSCommand.self])
}
