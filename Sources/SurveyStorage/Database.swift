import Logging
import Postgres
import ServiceLifecycle
import SurveyDomain
import Synchronization

/// The product's database: a pool of connections that run as the unprivileged role
/// `survey_app`, and the one way in for tenant data, `withTenant(_:_:)`.
public struct Database: Sendable {
    public let client: PostgresClient
    /// Whether `read` batches tenant reads (on unless a deployment on Citus turns it off).
    public var batchingReads: Bool

    public init(client: PostgresClient, batchingReads: Bool = true) {
        self.client = client
        self.batchingReads = batchingReads
    }

    /// The unprivileged roles the migrations create; every query runs as one of them.
    public enum Role: String, Sendable {
        /// `serve`: the tenant API and the webhooks.
        case application = "survey_app"
        /// `worker`: the SMS queue and the delivery columns of requests.
        case worker = "survey_worker"
        /// The operator's command line: the application's rights, plus finding a token's company.
        case admin = "survey_admin"
    }

    /// A pool whose connections switch to `role` before first use.
    ///
    /// In production `url` logs in as a dedicated role that is a member of `role`.
    /// Where it logs in as a privileged role (local runs, Compose), `SET ROLE` still makes
    /// every query run as `role`, and a warning says so once.
    ///
    /// Sessions also get a `statement_timeout` and an `idle_in_transaction_session_timeout`,
    /// so neither a runaway query nor a stuck transaction holds a connection for long, and
    /// `jit = off`: every statement here is short, and JIT compiling one whose row estimate
    /// is large (a report's raw edges on a big table) costs more than running it.
    ///
    /// Requests wait at most `waitTimeout` for a connection, and at most `maximumWaiters`
    /// wait at once; past either they fail at once as unavailable (the API answers 503 with
    /// `Retry-After`) instead of queueing without end behind a slow database.
    public static func applicationPool(
        url: String, applicationName: String, role: Role = .application, maximumConnections: Int = 10,
        maximumWaiters: Int = 1000, waitTimeout: Duration = .seconds(5),
        statementTimeout: Duration = .seconds(30), logger: Logger
    ) -> PostgresClient {
        // The client gives up on the server a little after the server's own limit would
        // have stopped the statement: only a server that cannot answer (a partition, a
        // stopped process) runs into it.
        var configuration = PostgresClient.Configuration(
            connection: .init(url: url, applicationName: applicationName, responseTimeout: statementTimeout + .seconds(5)))
        configuration.maximumConnections = maximumConnections
        configuration.maximumWaiters = maximumWaiters
        configuration.waitTimeout = waitTimeout
        configuration.minimumConnections = min(2, maximumConnections)
        let warned = Atomic<Bool>(false)
        // Rounded up: 0.5 s is 500 ms, and never 0 (which would mean no timeout).
        let timeoutMilliseconds = max(1, statementTimeout.roundedUpMilliseconds)
        configuration.connectionSetup = { connection in
            let row = try await connection.query(
                "SELECT current_user::text, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
            ).single
            let (user, superuser, bypassRLS) = try row?.decode((String, Bool, Bool).self) ?? ("?", false, false)
            if superuser || bypassRLS, !warned.exchange(true, ordering: .relaxed) {
                logger.warning(
                    "DATABASE_URL logs in as a privileged role; switching every connection to \(role.rawValue). In production, log in as a dedicated role that is a member of \(role.rawValue).",
                    metadata: ["role": "\(user)"])
            }
            try await connection.simpleQuery(
                """
                SET ROLE \(role.rawValue);
                SET jit = off;
                SET statement_timeout = \(timeoutMilliseconds);
                SET idle_in_transaction_session_timeout = \(timeoutMilliseconds * 2)
                """)
        }
        return PostgresClient(configuration: configuration, logger: logger)
    }

    /// Runs `body` in a transaction scoped to one company: row-level security shows and
    /// accepts only that company's rows. The setting is transaction-local, so it ends with
    /// the transaction and can never leak to the next user of the pooled connection.
    /// `isolation: .repeatableRead` gives every statement of `body` the same snapshot.
    @discardableResult
    public func withTenant<Result>(
        _ company: CompanyID, isolation: IsolationLevel = .readCommitted,
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        // The id is an integer the program formats, so it can share BEGIN's round trip.
        // `SET LOCAL` rather than `set_config(…, true)`, its equal here: Citus forwards
        // `SET LOCAL` to the worker nodes (citus.propagate_set_commands = 'local').
        // Every body given here only touches the database, in this transaction: a connection
        // lost before COMMIT (a terminated backend, a failover) can run it again elsewhere.
        try await client.withTransaction(
            isolation: isolation, prelude: { Self.tenantSettings(company) },
            retryingIfLost: true, deadline: RequestDeadline.current
        ) { connection in
            try await body(connection)
        }
    }
}

extension Database {
    /// Runs `body`, a whole transaction, again (at most `attempts` times in all) when
    /// PostgreSQL ends it as a deadlock victim or a serialization failure: locks are taken
    /// in one order where the code can (numbers by hash), but a request, its job and its
    /// number are reached from different ends by a reply, a cancel and the scheduler.
    public static func retryingConflicts<Result>(attempts: Int = 3, _ body: () async throws -> Result) async throws -> Result {
        var attempt = 1
        while true {
            do {
                return try await body()
            } catch let error as PostgresError
                where attempt < attempts
                && (error.sqlState == PostgresError.SQLState.deadlockDetected || error.sqlState == PostgresError.SQLState.serializationFailure)
            {
                attempt += 1
            }
        }
    }

    /// The tenant, and the time left to the request's deadline if it has one. Both are
    /// integers the program formats; a setting takes no parameters.
    static func tenantSettings(_ company: CompanyID) -> [PostgresQuery] {
        var settings = [PostgresQuery(unsafeSQL: "SET LOCAL app.company_id = '\(company.rawValue)'")]
        if let timeout = RequestDeadline.statementTimeoutSetting() { settings.append(PostgresQuery(unsafeSQL: timeout)) }
        return settings
    }

    /// Scopes the rest of a transaction already begun on `connection` to `company`, for
    /// work that learns its company from the data (a webhook's reply). Non-blocking, like
    /// any other statement; `SET LOCAL` ends with the transaction.
    static func enterTenant(_ company: CompanyID, on connection: PostgresConnection) async throws {
        _ = try await connection.pipeline(tenantSettings(company))
    }

    /// One read-only statement in a transaction scoped to one company, for the reads that
    /// make most of the API's traffic: row-level security shows it that company's rows only,
    /// as under `withTenant`.
    ///
    /// Batched (`PostgresClient.batched`): the reads that arrive while the database is busy
    /// go out together on one connection, each its own transaction, and share a round trip
    /// and the server's wake-up. The tenant, the deadline's `statement_timeout` and
    /// read-only mode are set by `set_config(…, true)` in the segment's first statement,
    /// which ends with its implicit transaction. Citus does not forward `set_config` to its
    /// worker nodes as it does `SET LOCAL` (`docs/SCALING.md`): with `batchingReads` off,
    /// each read is sent alone, in `BEGIN READ ONLY` with `SET LOCAL`, in one round trip.
    public func read(_ company: CompanyID, _ query: PostgresQuery) async throws -> PostgresRows {
        guard batchingReads else { return try await readAlone(company, query) }
        let deadline = RequestDeadline.current
        return try await client.batched(deadline: deadline) {
            [Self.readSettings(company, statementTimeout: RequestDeadline.statementTimeoutMilliseconds(until: deadline)), query]
        }[1]
    }

    /// The segment's first statement: its tenant, its time, and no writes. Prepared once
    /// per connection, like any other statement with parameters.
    static func readSettings(_ company: CompanyID, statementTimeout milliseconds: Int64?) -> PostgresQuery {
        if let milliseconds {
            "SELECT set_config('app.company_id', \(company), true), set_config('statement_timeout', \(String(milliseconds)), true), set_config('transaction_read_only', 'on', true)"
        } else {
            "SELECT set_config('app.company_id', \(company), true), set_config('transaction_read_only', 'on', true)"
        }
    }

    /// `read` on a connection of its own: `BEGIN READ ONLY`, the tenant, the statement and
    /// `COMMIT` go out together (pipeline mode).
    func readAlone(_ company: CompanyID, _ query: PostgresQuery) async throws -> PostgresRows {
        try await client.withConnection(retryingIfLost: true, deadline: RequestDeadline.current) { connection in
            do {
                let settings = Self.tenantSettings(company)
                // READ ONLY: a lost connection runs this again, which only a read may.
                return try await connection.pipeline(["BEGIN READ ONLY"] + settings + [query, "COMMIT"])[1 + settings.count]
            } catch {
                // An error leaves the transaction open and aborted.
                try? await connection.rollback()
                throw error
            }
        }
    }
}

/// The pool's upkeep (keeping its minimum, closing idle connections) runs as a service of
/// the process, and its graceful shutdown closes every connection.
extension Database: Service {
    public func run() async throws {
        try await client.run()
    }
}

extension Identifier: PostgresEncodable, PostgresDecodable, PostgresOptionalDecodableOrValue {
    public var postgresText: String? { String(rawValue) }
    public init(postgresText text: String) throws(PostgresError) {
        self.init(rawValue: try Int64(postgresText: text))
    }
}

extension LanguageTag: PostgresEncodable, PostgresDecodable, PostgresOptionalDecodableOrValue {
    public var postgresText: String? { value }
    public init(postgresText text: String) throws(PostgresError) {
        do {
            try self.init(parsing: text)
        } catch {
            throw PostgresError(code: .decoding, message: "stored language tag is invalid: \(error)")
        }
    }
}
