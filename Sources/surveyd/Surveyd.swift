import ArgumentParser

@main
struct Surveyd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "NPS surveys over SMS: the API server, the SMS worker and their tools.",
        discussion: "Configuration comes from the environment:\n\n" + EnvironmentVariables.help,
        version: surveydVersion,
        subcommands: [Migrate.self, Serve.self, WorkerCommand.self, CompanyCommand.self, TokenCommand.self, SMSCommand.self])
}

/// `surveyd --version`. The release's own number, raised with each landing that changes
/// what an operator or integrator sees; the API's version is in its path (`1.0.0`).
let surveydVersion = "1.1.0"
