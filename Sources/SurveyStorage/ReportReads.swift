import Foundation
import Metrics
import Postgres
import SurveyDomain
import Synchronization

/// Where the reports read (`REPORTS_DATABASE_URL`): a hot standby when one is configured
/// and fresh enough, so that heavy analytics never load the primary; else the primary. The
/// standby's freshness is asked at most once a second: in recovery, a standby that has
/// replayed all it received is current; one behind is as old as its last replayed commit,
/// and past `maximumLag` the primary answers instead. A standby that does not answer is
/// left for the primary too, and asked again a second later.
public struct ReportReads: Sendable {
    public let primary: Database
    let replica: Replica?

    public init(primary: Database, replica: Database? = nil, maximumLag: Duration = .seconds(30)) {
        self.primary = primary
        self.replica = replica.map { Replica(database: $0, maximumLag: maximumLag) }
    }

    /// What a read found, and as of when: the standby's last replayed commit (or now, when
    /// it is current or the primary answered).
    public struct Read<Value: Sendable>: Sendable {
        public var value: Value
        public var asOf: Date
        public var fromReplica: Bool
    }

    /// Runs `body` against the standby when it is fresh enough, else the primary; a standby
    /// that fails to answer is replaced by the primary for this read and the next second's.
    public func read<Value: Sendable>(_ body: (Database) async throws -> Value) async throws -> Read<Value> {
        if let replica, let asOf = await replica.freshAsOf() {
            do {
                let value = try await body(replica.database)
                Counter(label: "report_reads_total", dimensions: [("source", "replica")]).increment()
                return Read(value: value, asOf: asOf, fromReplica: true)
            } catch let error where StorageFailure(error) == .unavailable {
                replica.markDown()
                Counter(label: "report_replica_fallbacks_total", dimensions: [("reason", "down")]).increment()
            }
        }
        let value = try await body(primary)
        Counter(label: "report_reads_total", dimensions: [("source", "primary")]).increment()
        return Read(value: value, asOf: Date(), fromReplica: false)
    }
}

/// A standby and what was last learnt of its freshness.
final class Replica: Sendable {
    let database: Database
    let maximumLag: Duration
    /// When it was last asked, and how fresh it was then (`nil`: down or too far behind).
    private let state = Mutex<(askedAt: ContinuousClock.Instant, lag: Duration?)?>(nil)
    static let askEvery = Duration.seconds(1)

    init(database: Database, maximumLag: Duration) {
        self.database = database
        self.maximumLag = maximumLag
    }

    /// As of when the standby's data is, if it is fresh enough to read; `nil` otherwise.
    func freshAsOf() async -> Date? {
        let now = ContinuousClock.now
        if let known = state.withLock({ $0 }), now - known.askedAt < Self.askEvery {
            return known.lag.map { Date().addingTimeInterval(-$0.secondsValue) }
        }
        let lag = await ask()
        state.withLock { $0 = (now, lag) }
        return lag.map { Date().addingTimeInterval(-$0.secondsValue) }
    }

    func markDown() {
        state.withLock { $0 = (ContinuousClock.now, nil) }
    }

    /// How far behind the standby is (zero when it has replayed all it received, or is not
    /// in recovery at all), or `nil` when it does not answer or is past `maximumLag`.
    private func ask() async -> Duration? {
        do {
            let (lagSeconds) = try await database.client.withConnection { connection in
                try await connection.query(
                    """
                    SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0
                                WHEN pg_last_wal_receive_lsn() IS NOT NULL
                                     AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                                ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END::float8
                    """
                ).one().decode(Double?.self)
            }
            guard let lagSeconds, lagSeconds <= maximumLag.secondsValue else {
                Counter(label: "report_replica_fallbacks_total", dimensions: [("reason", "lagging")]).increment()
                return nil
            }
            return .milliseconds(Int64(max(0, lagSeconds) * 1000))
        } catch {
            Counter(label: "report_replica_fallbacks_total", dimensions: [("reason", "down")]).increment()
            return nil
        }
    }
}
