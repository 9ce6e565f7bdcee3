import Crypto
import Foundation
import Logging
import Postgres

/// Applies the plain SQL files of `sql/` (`NNNN_name.sql`) in order.
///
/// All pending files run in one transaction under an advisory lock, so two migrators
/// never interleave and a failure leaves the schema as it was. Each applied file is
/// recorded with its SHA-256; a file edited after it was applied is refused, as is a
/// database migrated by a newer build.
public struct Migrator: Sendable {
    public struct Migration: Sendable, Equatable {
        public var version: Int
        public var name: String
        public var sql: String

        public init(version: Int, name: String, sql: String) {
            self.version = version
            self.name = name
            self.sql = sql
        }

        public var checksum: String { SHA256.hash(data: Data(sql.utf8)).map { String(format: "%02x", $0) }.joined() }
    }

    public enum MigrationError: Error, CustomStringConvertible, Equatable {
        case directoryUnreadable(String)
        case badFileName(String)
        case duplicateVersion(Int)
        case changedAfterApplied(file: String, applied: String, now: String)
        case unknownAppliedVersion(Int, name: String)

        public var description: String {
            switch self {
            case .directoryUnreadable(let path):
                "cannot read migrations from \(path) (set SURVEYD_SQL_DIR to the folder of NNNN_name.sql files)"
            case .badFileName(let name):
                "migration file \(name) is not named NNNN_name.sql"
            case .duplicateVersion(let version):
                "two migration files have version \(version)"
            case .changedAfterApplied(let file, let applied, let now):
                "migration \(file) was edited after it was applied (checksum \(applied.prefix(12)) applied, \(now.prefix(12)) now); add a new migration instead of editing an applied one"
            case .unknownAppliedVersion(let version, let name):
                "the database has migration \(version) (\(name)) which this build does not have; run a newer surveyd"
            }
        }
    }

    public let migrations: [Migration]

    public init(migrations: [Migration]) throws {
        var seen = Set<Int>()
        for migration in migrations where !seen.insert(migration.version).inserted {
            throw MigrationError.duplicateVersion(migration.version)
        }
        self.migrations = migrations.sorted { $0.version < $1.version }
    }

    /// Loads every `NNNN_name.sql` of `directory`; other files are an error, so a typo
    /// cannot silently skip a migration.
    public init(directory: String) throws {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw MigrationError.directoryUnreadable(directory)
        }
        var migrations: [Migration] = []
        for name in names.sorted() where !name.hasPrefix(".") {
            guard name.hasSuffix(".sql"), name.count > 9,
                let version = Int(name.prefix(4)), name.dropFirst(4).first == "_",
                name.prefix(4).allSatisfy(\.isNumber)
            else { throw MigrationError.badFileName(name) }
            guard let sql = try? String(contentsOfFile: directory + "/" + name, encoding: .utf8) else {
                throw MigrationError.directoryUnreadable(directory + "/" + name)
            }
            migrations.append(Migration(version: version, name: String(name.dropLast(4)), sql: sql))
        }
        try self.init(migrations: migrations)
    }

    /// Arbitrary but fixed: the key of the advisory lock that serialises migrators.
    static let lockKey: Int64 = 0x5375_7276_6579_6400  // "Surveyd\0"

    /// Applies what is pending and returns the names applied (empty when up to date).
    @discardableResult
    public func migrate(on connection: PostgresConnection, logger: Logger) async throws -> [String] {
        try await connection.withTransaction { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(Self.lockKey))")
            try await connection.simpleQuery(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version    integer PRIMARY KEY,
                    name       text        NOT NULL,
                    checksum   text        NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """)
            let applied = try await connection.query("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
                .map { try $0.decode((Int, String, String).self) }
            let known = Dictionary(uniqueKeysWithValues: migrations.map { ($0.version, $0) })
            for (version, name, checksum) in applied {
                guard let migration = known[version] else {
                    throw MigrationError.unknownAppliedVersion(version, name: name)
                }
                guard migration.checksum == checksum else {
                    throw MigrationError.changedAfterApplied(file: migration.name + ".sql", applied: checksum, now: migration.checksum)
                }
            }
            let appliedVersions = Set(applied.map(\.0))
            var names: [String] = []
            for migration in migrations where !appliedVersions.contains(migration.version) {
                logger.info("applying migration", metadata: ["migration": "\(migration.name)"])
                try await connection.simpleQuery(migration.sql)
                try await connection.query(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (\(migration.version), \(migration.name), \(migration.checksum))"
                )
                names.append(migration.name)
            }
            return names
        }
    }

    /// Whether every known migration is applied (for readiness checks).
    public func isCurrent(on connection: PostgresConnection) async throws -> Bool {
        let rows = try await connection.query(
            "SELECT count(*)::bigint FROM schema_migrations WHERE version = ANY(\(migrations.map(\.version)))")
        return try rows.single?.decode(Int.self, column: "count") == migrations.count
    }
}
