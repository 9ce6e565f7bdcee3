import Foundation
import Postgres
import SurveyDomain

/// Purges the routing and deduplication tables, which would otherwise grow for ever: in
/// small batches, each its own short transaction, so no purge holds locks that replies or
/// sends would queue behind. Runs as the worker (role `survey_worker`).
public struct RetentionRepository: Sendable {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// How long each kind of row is kept (docs/SENDING.md, "Retention").
    public struct Periods: Sendable {
        /// Processed inbound message ids: providers retry a webhook for minutes, not days.
        public var inboundMessages: Duration = .seconds(7 * 86_400)
        /// Provider id → request, for delivery callbacks: carriers report within days.
        public var providerMessages: Duration = .seconds(35 * 86_400)
        /// Open-survey slots past their expiry (they no longer hold their number).
        public var expiredOpenSurveys: Duration = .seconds(86_400)
        /// Callbacks kept early whose send was never recorded.
        public var earlyCallbacks: Duration = .seconds(86_400)
        /// Company webhook events, with their deliveries and attempt log: far past the
        /// retry schedule's four days, long enough to look into last month's deliveries.
        public var webhookEvents: Duration = .seconds(30 * 86_400)
        /// Dashboard sessions, counted from their last use: long past their 12-hour idle end.
        public var dashboardSessions: Duration = .seconds(86_400)

        public init() {}
    }

    public enum Table: String, Sendable, CaseIterable {
        case inboundMessages = "inbound_messages"
        case providerMessages = "provider_messages"
        case openSurveys = "open_surveys"
        case earlyDeliveryStatuses = "early_delivery_statuses"
        case earlyReplies = "early_replies"
        /// Progress rows of claims whose worker died after its last record (never one whose
        /// jobs are still leased: the reaper needs it).
        case claims = "sms_claims"
        /// Company webhook events (their deliveries and attempts go with them).
        case webhookEvents = "webhook_events"
        /// Dashboard sessions no longer used.
        case dashboardSessions = "dashboard_sessions"
    }

    /// The column that dates each table's rows, and how long they are kept past it.
    static func age(of table: Table, _ periods: Periods) -> (column: String, kept: Duration) {
        switch table {
        case .inboundMessages: ("received_at", periods.inboundMessages)
        case .providerMessages: ("created_at", periods.providerMessages)
        case .openSurveys: ("expires_at", periods.expiredOpenSurveys)
        case .earlyDeliveryStatuses, .earlyReplies: ("received_at", periods.earlyCallbacks)
        case .claims: ("claimed_at", periods.earlyCallbacks)
        case .webhookEvents: ("created_at", periods.webhookEvents)
        case .dashboardSessions: ("last_seen_at", periods.dashboardSessions)
        }
    }

    /// How the purge finds a table's rows past keeping, by the index its dating column has.
    public enum Access: Sendable {
        /// A B-tree: batches of the oldest rows first.
        case oldestFirst
        /// A BRIN index (an append-only table, dated as inserted): batches of old rows, in
        /// whatever order the ranges of pages give them.
        case byPageRange
        /// No index, so that updating the column stays a heap-only update on the send path:
        /// the table is swept by ranges of pages (`sweepPages`).
        case sweep
    }

    public static func access(of table: Table) -> Access {
        switch table {
        case .openSurveys: .sweep
        case .inboundMessages, .providerMessages: .byPageRange
        case .earlyDeliveryStatuses, .earlyReplies, .claims, .webhookEvents, .dashboardSessions: .oldestFirst
        }
    }

    /// Deletes one batch of rows past keeping from `table` (not one swept by pages);
    /// returns how many went. Rows are found by their physical address within the one
    /// statement: a row changed meanwhile (an expired slot taken over by a new send) has
    /// moved, is no longer past keeping, and is left alone.
    public func purgeBatch(_ table: Table, periods: Periods, limit: Int) async throws -> Int {
        precondition(Self.access(of: table) != .sweep, "\(table.rawValue) is swept by pages")
        let (column, kept) = Self.age(of: table, periods)
        let seconds = kept.secondsValue
        // A claim whose jobs are still leased waits for the reaper, which records its noted
        // sends (cascading its notes away first would fail them as `uncertain`).
        let unless: StaticString =
            table == .claims
            ? "AND NOT EXISTS (SELECT 1 FROM sms_jobs AS j WHERE j.leased_until IS NOT NULL AND j.lease_id = sms_claims.lease_id)" : ""
        // Oldest first needs the B-tree's order; under BRIN, ordering would sort every old row
        // of a backlog for each batch, so any old rows will do.
        let query: PostgresQuery =
            Self.access(of: table) == .oldestFirst
            ? """
                DELETE FROM \(identifier: table.rawValue) WHERE ctid = ANY(ARRAY(
                    SELECT ctid FROM \(identifier: table.rawValue)
                     WHERE \(identifier: column) < now() - make_interval(secs => \(seconds)) \(fragment: unless)
                     ORDER BY \(identifier: column) LIMIT \(limit)))
                  AND \(identifier: column) < now() - make_interval(secs => \(seconds))
                """
            : """
                DELETE FROM \(identifier: table.rawValue) WHERE ctid = ANY(ARRAY(
                    SELECT ctid FROM \(identifier: table.rawValue)
                     WHERE \(identifier: column) < now() - make_interval(secs => \(seconds))
                     LIMIT \(limit)))
                  AND \(identifier: column) < now() - make_interval(secs => \(seconds))
                """
        return try await database.client.withConnection { connection in
            try await connection.query(query).affectedRows
        }
    }

    /// Deletes the rows past keeping among `pages` pages of `table` from page `first` (a TID
    /// range scan, one short statement). Returns how many went and the page to sweep from
    /// next, or nil once past the table's last page.
    public func sweepPages(_ table: Table, periods: Periods, from first: Int, pages: Int) async throws -> (deleted: Int, next: Int?) {
        precondition(Self.access(of: table) == .sweep, "\(table.rawValue) is purged by its index")
        let (column, kept) = Self.age(of: table, periods)
        let end = first + pages
        let row = try await database.client.withConnection { connection in
            try await connection.query(
                """
                WITH gone AS (
                    DELETE FROM \(identifier: table.rawValue)
                     WHERE ctid >= \("(\(first),0)")::tid AND ctid < \("(\(end),0)")::tid
                       AND \(identifier: column) < now() - make_interval(secs => \(kept.secondsValue))
                    RETURNING 1
                )
                SELECT (SELECT count(*) FROM gone)::int,
                       (pg_relation_size(\(table.rawValue)::regclass) / current_setting('block_size')::int)::bigint
                """
            ).one().decode((Int, Int).self)
        }
        return (row.0, end < row.1 ? end : nil)
    }
}
