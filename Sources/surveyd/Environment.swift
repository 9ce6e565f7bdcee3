import Foundation
import Logging
import SurveyDomain

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
        guard let text = Self.value("DATABASE_MAX_CONNECTIONS") else { return value }
        guard let number = Int(text), (1...500).contains(number) else {
            throw Invalid(name: "DATABASE_MAX_CONNECTIONS", hint: "must be a number from 1 to 500, got \(text)")
        }
        return number
    }

    /// The key of the phone-number hashes; `serve` and `worker` refuse to start without it.
    static func destinationHasher() throws -> DestinationHasher {
        try DestinationHasher(hexKey: value("DESTINATION_HASH_KEY"))
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

    static func logger(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = value("LOG_LEVEL").flatMap(Logger.Level.init(rawValue:)) ?? .info
        return logger
    }
}
