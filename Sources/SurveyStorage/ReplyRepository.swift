import Foundation
import Postgres
import SurveyDomain

/// What comes back from phones: replies (scores, bad answers, STOP/START) and delivery
/// statuses. Neither says which company it is for; the cross-tenant indexes
/// (`open_surveys`, `provider_messages`) do, and the update itself then runs scoped to
/// that company.
public struct ReplyRepository: Sendable {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    public enum ReplyOutcome: Equatable, Sendable {
        /// The first good answer: the request's score.
        case scored(company: CompanyID, request: RequestID)
        /// Not a score; the request counts a bad response until a good one comes.
        case badResponse(company: CompanyID, request: RequestID)
        case optedOut, optedIn
        /// No open survey for this number (never surveyed, answered, expired).
        case ignored
        /// This provider message was processed already (providers retry webhooks).
        case duplicate
    }

    /// Records an inbound SMS. Only the parsed meaning is kept, never the text.
    public func recordReply(_ reply: Reply, from hash: Data, messageID: String) async throws -> ReplyOutcome {
        try await database.client.withTransaction(deadline: RequestDeadline.current) { connection in
            let first = try await connection.query(
                "INSERT INTO inbound_messages (provider_message_id) VALUES (\(messageID)) ON CONFLICT DO NOTHING RETURNING 1")
            guard !first.isEmpty else { return .duplicate }
            switch reply {
            case .optOut:
                try await connection.query("INSERT INTO opt_outs (destination_hash) VALUES (\(hash)) ON CONFLICT DO NOTHING")
                // No survey stays open to a number that asked us to stop.
                try await connection.query("DELETE FROM open_surveys WHERE destination_hash = \(hash)")
                return .optedOut
            case .optIn:
                try await connection.query("DELETE FROM opt_outs WHERE destination_hash = \(hash)")
                return .optedIn
            case .score, .bad:
                guard let open = try await connection.query(
                    """
                    SELECT company_id, request_id FROM open_surveys
                     WHERE destination_hash = \(hash) AND expires_at > now()
                     FOR UPDATE
                    """
                ).single else { return .ignored }
                let (company, request) = try open.decode((CompanyID, RequestID).self)
                try await Database.enterTenant(company, on: connection)
                if case .score(let score) = reply {
                    let updated = try await connection.query(
                        """
                        UPDATE survey_requests SET score = \(score), responded_at = now()
                         WHERE company_id = \(company) AND request_id = \(request)
                           AND score IS NULL AND status IN ('sent', 'delivered') AND respond_by > now()
                        RETURNING 1
                        """)
                    guard !updated.isEmpty else { return .ignored }
                    // Answered: the number is free for the next survey.
                    try await connection.query(
                        "DELETE FROM open_surveys WHERE destination_hash = \(hash) AND company_id = \(company) AND request_id = \(request)")
                    return .scored(company: company, request: request)
                }
                let updated = try await connection.query(
                    """
                    UPDATE survey_requests SET bad_replies = bad_replies + 1
                     WHERE company_id = \(company) AND request_id = \(request)
                       AND score IS NULL AND status IN ('sent', 'delivered') AND respond_by > now()
                    RETURNING 1
                    """)
                return updated.isEmpty ? .ignored : .badResponse(company: company, request: request)
            }
        }
    }

    public enum DeliveryStatus: Sendable, Equatable {
        case delivered
        case failed
        /// Intermediate statuses (queued, sending, sent, ...): nothing to record.
        case other
    }

    /// Records a delivery status callback. Idempotent: statuses only move forward.
    @discardableResult
    public func recordDelivery(_ status: DeliveryStatus, messageID: String) async throws -> Bool {
        guard status != .other else { return false }
        return try await database.client.withTransaction(deadline: RequestDeadline.current) { connection in
            guard let row = try await connection.query(
                "SELECT company_id, request_id FROM provider_messages WHERE provider_message_id = \(messageID)"
            ).single else { return false }
            let (company, request) = try row.decode((CompanyID, RequestID).self)
            try await Database.enterTenant(company, on: connection)
            switch status {
            case .delivered:
                let updated = try await connection.query(
                    """
                    UPDATE survey_requests SET status = 'delivered', delivered_at = now()
                     WHERE company_id = \(company) AND request_id = \(request) AND status = 'sent'
                    RETURNING 1
                    """)
                return !updated.isEmpty
            case .failed:
                let updated = try await connection.query(
                    """
                    UPDATE survey_requests SET status = 'failed', failure = 'undelivered', failed_at = now()
                     WHERE company_id = \(company) AND request_id = \(request) AND status IN ('sent', 'delivered')
                       AND score IS NULL
                    RETURNING destination_hash
                    """)
                guard let hash = try updated.single?.decode(Data.self) else { return false }
                try await connection.query(
                    "DELETE FROM open_surveys WHERE destination_hash = \(hash) AND company_id = \(company) AND request_id = \(request)")
                return true
            case .other:
                return false
            }
        }
    }

    /// Messages and SMS segments sent in `[start, end)`: the basis of the invoice.
    public func usage(company: CompanyID, from start: Date, to end: Date) async throws -> (messages: Int, segments: Int) {
        try await database.withTenant(company) { connection in
            try await connection.query(
                """
                SELECT count(*)::bigint, coalesce(sum(sms_segments), 0)::bigint FROM survey_requests
                 WHERE company_id = \(company) AND sent_at >= \(start) AND sent_at < \(end)
                """
            ).one().decode((Int, Int).self)
        }
    }
}
