import Logging
import Metrics
import NIOPosix
import ServiceLifecycle
import Synchronization

/// A pool of PostgreSQL connections.
///
/// Connections open on demand up to `maximumConnections`; requests beyond that wait in a
/// FIFO queue, bounded in length and in time, and fail fast with `poolTimeout`,
/// `poolExhausted` or (when the server is unreachable) `poolUnavailable` rather than pile
/// up. A connection comes back from `withConnection` only if it is healthy and outside any
/// transaction; otherwise it is closed and replaced.
///
/// Run it as a `Service` (`run()`) to keep `minimumConnections` open, close idle ones and
/// shut down gracefully; without `run()` it still works, opening connections on demand.
public final class PostgresClient: Service, Sendable {
    public struct Configuration: Sendable {
        public var connection: PostgresConnection.Configuration
        public var minimumConnections = 0
        public var maximumConnections = 10
        public var maximumWaiters = 1000
        public var waitTimeout: Duration = .seconds(5)
        public var idleTimeout: Duration = .seconds(60)
        public var initialBackoff: Duration = .milliseconds(100)
        public var maximumBackoff: Duration = .seconds(2)
        /// How many connections at most send batches of reads at once (`batched`): the
        /// fewer, the more reads each batch carries while the database is busy. A few are
        /// enough to keep a small server's cores busy.
        public var maximumBatchingConnections = 4
        /// The most reads in one batch: bounds how long the last waits behind the others.
        public var maximumBatchSize = 32
        /// Runs once on every new connection before it is first handed out (e.g. `SET ROLE`).
        public var connectionSetup: (@Sendable (PostgresConnection) async throws -> Void)?

        public init(connection: PostgresConnection.Configuration) {
            self.connection = connection
        }
    }

    private struct State: ~Copyable {
        var machine: PoolStateMachine<ContinuousClock>
        var connections: [Int: PostgresConnection] = [:]
        /// The pool's id of each open connection, to find it again on release.
        var ids: [ObjectIdentifier: Int] = [:]
        var waiting: [Int: CheckedContinuation<PostgresConnection, any Error>] = [:]
        var nextRequestID = 0
        var nextConnectionID = 0
        var lastError: PostgresError?
        /// Connections being closed; the thread pool stays up until they are.
        var closing = 0
    }

    public let configuration: Configuration
    private let state: Mutex<State>
    /// Reads waiting for a batch (`PostgresClient+Batching.swift`).
    let batches = Mutex(BatchQueue())
    private let threadPool: NIOThreadPool
    private let logger: Logger
    let clock = ContinuousClock()
    let metrics: PoolMetrics

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.state = Mutex(State(machine: PoolStateMachine(configuration: .init(
            minimumConnections: configuration.minimumConnections,
            maximumConnections: configuration.maximumConnections,
            maximumWaiters: configuration.maximumWaiters,
            waitTimeout: configuration.waitTimeout,
            idleTimeout: configuration.idleTimeout,
            initialBackoff: configuration.initialBackoff,
            maximumBackoff: configuration.maximumBackoff))))
        // For what still blocks (connecting, within its `connect_timeout`, and closing);
        // statements do not use it. One thread per connection, so reconnecting
        // the whole pool at once after an outage never queues behind itself.
        self.threadPool = NIOThreadPool(numberOfThreads: configuration.maximumConnections)
        self.threadPool.start()
        self.metrics = PoolMetrics(applicationName: configuration.connection.applicationName)
    }

    deinit {
        threadPool.shutdownGracefully { _ in }
    }

    // MARK: Public API

    /// Leases a connection for the duration of `body`.
    ///
    /// With `retryingIfLost`, a `body` that fails because its connection was lost (a backend
    /// terminated between the health check and the first statement), or because a statement
    /// prepared on it went stale, runs again. Only for bodies that are safe to run twice: a statement whose backend
    /// died may still have committed.
    ///
    /// Waiting for a connection ends at the pool's `waitTimeout`, or at `deadline` (the
    /// caller's own, say a request's) if that comes first, with `poolTimeout`.
    @discardableResult
    public func withConnection<Result>(
        retryingIfLost: Bool = false, deadline: ContinuousClock.Instant? = nil,
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        var attempt = 0
        while true {
            let connection = try await leaseHealthy(deadline: deadline)
            do {
                let result = try await body(connection)
                release(connection)
                return result
            } catch let error as PostgresError
                where retryingIfLost && (error.isConnectionLost || error.isStalePreparedStatement) && attempt < maximumRetries
            {
                release(connection, after: error)
                attempt += 1
                logger.debug("connection lost, or a prepared statement gone stale, before the work was done; running it again", metadata: ["attempt": "\(attempt)"])
            } catch {
                release(connection, after: error)
                throw error
            }
        }
    }

    /// Runs `body` in a transaction: committed if it returns, rolled back if it throws.
    ///
    /// A connection lost at `BEGIN` (with the prelude, which must have no effect outside the
    /// transaction) is replaced and the transaction started again: nothing ran yet, so this is
    /// always safe, and it hides from callers the backends that died while idle in the pool.
    ///
    /// With `retryingIfLost`, a connection lost later, but before `COMMIT` was sent, also
    /// starts the transaction again on another connection: the server rolled it back, so
    /// nothing of it happened. Only for bodies whose every effect is in the transaction
    /// (nothing sent elsewhere, no state kept across runs). A connection lost during `COMMIT`
    /// is never retried: the transaction may have committed.
    ///
    /// `prelude` gives statements for the start of the transaction (settings such as `SET
    /// LOCAL`), sent with `BEGIN`; it is asked for once a connection is leased, on every
    /// attempt, so a setting computed from the time (what is left of a deadline) is current.
    /// `deadline` bounds the wait for a connection, as for `withConnection`.
    @discardableResult
    public func withTransaction<Result>(
        isolation: IsolationLevel = .readCommitted, prelude: () -> [PostgresQuery] = { [] }, retryingIfLost: Bool = false,
        deadline: ContinuousClock.Instant? = nil, _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        var attempt = 0
        while true {
            try Task.checkCancellation()
            let connection = try await leaseHealthy(deadline: deadline)
            do {
                try await connection.begin(isolation: isolation, prelude: prelude())
            } catch let error as PostgresError where error.isConnectionLost && attempt < maximumRetries {
                release(connection, after: error)
                attempt += 1
                continue
            } catch {
                release(connection, after: error)
                throw error
            }
            let result: Result
            do {
                result = try await connection.rollingBackOnError(body)
            } catch {
                release(connection, after: error)
                // A statement prepared before a migration changed its result type fails
                // once per connection, at Bind, before it ran: also worth running again.
                if retryingIfLost, let error = error as? PostgresError, error.isConnectionLost || error.isStalePreparedStatement,
                    attempt < maximumRetries
                {
                    attempt += 1
                    logger.debug("connection lost, or a prepared statement gone stale, inside a transaction; running it again", metadata: ["attempt": "\(attempt)"])
                    continue
                }
                throw error
            }
            // Never retried: a connection lost during COMMIT may have committed.
            do {
                try await connection.commit()
            } catch {
                release(connection, after: error)
                throw error
            }
            release(connection)
            return result
        }
    }

    /// As many as the pool could hold dead connections, plus one.
    var maximumRetries: Int { configuration.maximumConnections + 1 }

    /// Opens a connection outside the pool, on the pool's threads, for long-lived uses such
    /// as `LISTEN`. The caller closes it.
    /// It gets a thread of its own, so waiting for notifications never takes one from
    /// the pool.
    public func makeDedicatedConnection() async throws -> PostgresConnection {
        let thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(
                configuration: configuration.connection, threadPool: thread, ownsThreadPool: true, logger: logger)
        } catch {
            try? await thread.shutdownGracefully()
            throw error
        }
        do {
            if let setup = configuration.connectionSetup { try await setup(connection) }
        } catch {
            await connection.close()
            throw error
        }
        return connection
    }

    /// Keeps the minimum number of connections, closes idle ones, and on graceful shutdown
    /// stops handing out connections and closes them all.
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                self.perform(self.state.withLock { $0.machine.tick(now: self.clock.now) })
                self.publishMetrics()
                try? await Task.sleep(for: .seconds(1))
            }
        }
        await shutDown()
    }

    /// Fails waiters, closes idle connections, and waits (briefly) for leased ones.
    public func shutDown() async {
        perform(state.withLock { $0.machine.shutDown() })
        let deadline = clock.now.advanced(by: .seconds(10))
        while clock.now < deadline, !state.withLock({ $0.machine.isDrained && $0.closing == 0 }) {
            try? await Task.sleep(for: .milliseconds(10))
        }
        try? await threadPool.shutdownGracefully()
    }

    /// Current counts, for health endpoints and tests.
    public var statistics: Statistics {
        state.withLock { state in
            Statistics(
                idle: state.machine.idleCount, leased: state.machine.leased.count,
                connecting: state.machine.connecting, waiting: state.machine.waitingCount)
        }
    }

    public struct Statistics: Sendable, Equatable {
        public var idle: Int
        public var leased: Int
        public var connecting: Int
        public var waiting: Int
    }

    // MARK: Leasing

    func leaseHealthy(deadline: ContinuousClock.Instant?) async throws -> PostgresConnection {
        // A connection that died while idle (server restart, pg_terminate_backend) is seen
        // here without a round trip and replaced; bounded so a flapping server cannot spin us.
        for _ in 0...configuration.maximumConnections {
            let connection = try await lease(deadline: deadline)
            // Given up while idle (a cancel request that never arrived): not the server's
            // fault, closed quietly.
            guard connection.isReusable else {
                release(connection)
                continue
            }
            if connection.looksAlive() {
                connection.deadline = deadline
                return connection
            }
            // The server went away (a restart, a failover): the other idle connections are
            // as dead as this one, and are dropped with it.
            logger.info("postgres connection found dead in pool; reconnecting", metadata: ["backend_pid": "\(connection.backendPID)"])
            serverChanged(seenBy: connection)
            release(connection)
        }
        throw PostgresError(code: .poolUnavailable, message: "no live connection could be leased")
    }

    private func lease(deadline: ContinuousClock.Instant?) async throws -> PostgresConnection {
        let start = clock.now
        let requestID = state.withLock { state in
            state.nextRequestID += 1
            return state.nextRequestID
        }
        let connection = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<PostgresConnection, any Error>) in
                let actions = state.withLock { state in
                    state.waiting[requestID] = continuation
                    return state.machine.leaseRequested(requestID, now: clock.now, deadline: deadline)
                }
                perform(actions)
                // The cancellation handler may have run before the continuation was stored.
                if Task.isCancelled { perform(state.withLock { $0.machine.requestCancelled(requestID) }) }
            }
        } onCancel: {
            perform(state.withLock { $0.machine.requestCancelled(requestID) })
        }
        metrics.waitTime.recordNanoseconds(Int64((clock.now - start).nanoseconds))
        return connection
    }

    /// Gives `connection` back after `body` failed with `error`. An error that says the
    /// server is gone, unresponsive or no longer the primary drops the pool's other
    /// connections to it too (`serverChanged`), so that the next requests find the server
    /// afresh, the new primary after a failover, instead of failing one dead connection at
    /// a time.
    func release(_ connection: PostgresConnection, after error: any Error) {
        if let error = error as? PostgresError, error.saysServerChanged, !connection.isReusable {
            logger.warning(
                "postgres server lost, unresponsive or no longer the primary; dropping its connections",
                metadata: ["error": "\(error.debugDescription)"])
            serverChanged(seenBy: connection)
        }
        release(connection)
    }

    private func serverChanged(seenBy connection: PostgresConnection) {
        perform(state.withLock { state in
            guard let id = state.ids[ObjectIdentifier(connection)] else { return [] }
            return state.machine.serverChanged(seenBy: id)
        })
    }

    func release(_ connection: PostgresConnection) {
        connection.deadline = nil
        let reusable = connection.isReusable
        if !reusable {
            logger.debug("closing postgres connection returned broken or inside a transaction")
        }
        perform(state.withLock { state in
            guard let id = state.ids[ObjectIdentifier(connection)] else { return [] }
            if !reusable {
                state.connections[id] = nil
                state.ids[ObjectIdentifier(connection)] = nil
            }
            return state.machine.connectionReleased(id, reusable: reusable, now: clock.now)
        }, closing: reusable ? [] : [connection])
    }

    // MARK: Carrying out actions

    /// Carries out the state machine's decisions. Called outside the lock.
    private func perform(_ actions: [PoolStateMachine<ContinuousClock>.Action], closing: [PostgresConnection] = []) {
        var toClose = closing
        for action in actions {
            switch action {
            case .lease(let id, let request):
                let (continuation, connection) = state.withLock { ($0.waiting.removeValue(forKey: request), $0.connections[id]) }
                if let continuation, let connection {
                    continuation.resume(returning: connection)
                }
            case .fail(let request, let failure):
                let (continuation, lastError) = state.withLock { state in
                    (state.waiting.removeValue(forKey: request), state.lastError)
                }
                continuation?.resume(throwing: error(for: failure, lastError: lastError))
                if failure == .timeout { metrics.timeouts.increment() }
            case .scheduleDeadlines(let instant):
                // One task sleeping until the earliest deadline, not a timer per wait: under
                // load most requests wait a moment, and a task each cost more than the wait.
                Task { [clock] in
                    try? await clock.sleep(until: instant)
                    self.perform(self.state.withLock { $0.machine.deadlinesDue(scheduledFor: instant, now: clock.now) })
                }
            case .scheduleRetry(let instant):
                Task { [clock] in
                    try? await clock.sleep(until: instant)
                    self.perform(self.state.withLock { $0.machine.retryDue(now: clock.now) })
                }
            case .createConnection:
                Task { await self.openConnection() }
            case .close(let id):
                let connection = state.withLock { state -> PostgresConnection? in
                    guard let connection = state.connections.removeValue(forKey: id) else { return nil }
                    state.ids[ObjectIdentifier(connection)] = nil
                    return connection
                }
                if let connection { toClose.append(connection) }
            }
        }
        if !toClose.isEmpty {
            state.withLock { $0.closing += toClose.count }
            for connection in toClose {
                Task {
                    await connection.close()
                    self.state.withLock { $0.closing -= 1 }
                }
            }
        }
        publishMetrics()
    }

    private func openConnection() async {
        do {
            let connection = try await PostgresConnection.connect(
                configuration: configuration.connection, threadPool: threadPool, logger: logger)
            do {
                if let setup = configuration.connectionSetup { try await setup(connection) }
            } catch {
                await connection.close()
                throw error
            }
            perform(state.withLock { state in
                state.nextConnectionID += 1
                state.connections[state.nextConnectionID] = connection
                state.ids[ObjectIdentifier(connection)] = state.nextConnectionID
                return state.machine.connectionEstablished(state.nextConnectionID, now: clock.now)
            })
        } catch {
            let postgresError = error as? PostgresError ?? PostgresError(code: .connectionFailed, message: "\(error)")
            logger.warning("cannot connect to postgres", metadata: ["error": "\(postgresError.debugDescription)"])
            metrics.connectFailures.increment()
            perform(state.withLock { state in
                state.lastError = postgresError
                return state.machine.connectionFailed(now: clock.now)
            })
        }
    }

    private func error(for failure: PoolStateMachine<ContinuousClock>.Failure, lastError: PostgresError?) -> any Error {
        switch failure {
        case .timeout:
            PostgresError(code: .poolTimeout, message: "no connection free in time (wait timeout \(configuration.waitTimeout), or the caller's deadline)")
        case .exhausted:
            PostgresError(code: .poolExhausted, message: "\(configuration.maximumWaiters) requests already waiting")
        case .unavailable:
            PostgresError(code: .poolUnavailable, message: "database unreachable: \(lastError?.debugDescription ?? "unknown")")
        case .shutDown:
            PostgresError(code: .poolShutDown)
        case .cancelled:
            CancellationError()
        }
    }

    private func publishMetrics() {
        metrics.publish(statistics)
    }
}
