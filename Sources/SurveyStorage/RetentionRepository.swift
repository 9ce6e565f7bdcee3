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

        public init() {}
    }

    public enum Table: String, Sendable, CaseIterable {
        case inboundMessages = "inbound_messages"
        case providerMessages = "provider_messages"
        case openSurveys = "open_surveys"
        case earlyDeliveryStatuses = "early_delivery_statuses"
        case earlyReplies = "early_replies"
    }

    /// Deletes one batch of rows past keeping from `table`; returns how many went.
    public func purgeBatch(_ table: Table, periods: Periods, limit: Int) async throws -> Int {
        try await database.client.withConnection { connection in
            let rows: PostgresRows
            switch table {
            case .inboundMessages:
                rows = try await connection.query(
                    """
                    DELETE FROM inbound_messages WHERE provider_message_id IN (
                        SELECT provider_message_id FROM inbound_messages
                         WHERE received_at < now() - make_interval(secs => \(Self.seconds(periods.inboundMessages)))
                         ORDER BY received_at LIMIT \(limit))
                    """)
            case .providerMessages:
                rows = try await connection.query(
                    """
                    DELETE FROM provider_messages WHERE provider_message_id IN (
                        SELECT provider_message_id FROM provider_messages
                         WHERE created_at < now() - make_interval(secs => \(Self.seconds(periods.providerMessages)))
                         ORDER BY created_at LIMIT \(limit))
                    """)
            case .openSurveys:
                rows = try await connection.query(
                    """
                    DELETE FROM open_surveys WHERE destination_hash IN (
                        SELECT destination_hash FROM open_surveys
                         WHERE expires_at < now() - make_interval(secs => \(Self.seconds(periods.expiredOpenSurveys)))
                         ORDER BY expires_at LIMIT \(limit) FOR UPDATE SKIP LOCKED)
                      AND expires_at < now() - make_interval(secs => \(Self.seconds(periods.expiredOpenSurveys)))
                    """)
            case .earlyDeliveryStatuses:
                rows = try await connection.query(
                    """
                    DELETE FROM early_delivery_statuses WHERE provider_message_id IN (
                        SELECT provider_message_id FROM early_delivery_statuses
                         WHERE received_at < now() - make_interval(secs => \(Self.seconds(periods.earlyCallbacks))) LIMIT \(limit))
                    """)
            case .earlyReplies:
                rows = try await connection.query(
                    """
                    DELETE FROM early_replies WHERE (company_id, request_id, provider_message_id) IN (
                        SELECT company_id, request_id, provider_message_id FROM early_replies
                         WHERE received_at < now() - make_interval(secs => \(Self.seconds(periods.earlyCallbacks))) LIMIT \(limit))
                    """)
            }
            return rows.affectedRows
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
