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
        /// HELP: answered, nothing recorded.
        case help
        /// No open survey for this number (never surveyed, answered, expired).
        case ignored
        /// This provider message was processed already (providers retry webhooks).
        case duplicate
    }

    /// Records an inbound SMS. Only the parsed meaning is kept, never the text. The routing
    /// table is reached only through its functions (`route_reply`, `release_*`); the
    /// request's own row is then changed scoped to its company.
    public func recordReply(_ reply: Reply, from hash: Data, messageID: String) async throws -> ReplyOutcome {
        try await database.client.withTransaction(deadline: RequestDeadline.current) { connection in
            let first = try await connection.query(
                "INSERT INTO inbound_messages (provider_message_id) VALUES (\(messageID)) ON CONFLICT DO NOTHING RETURNING 1")
            guard !first.isEmpty else { return .duplicate }
            let score: Int?
            switch reply {
            case .optOut:
                try await connection.query("INSERT INTO opt_outs (destination_hash) VALUES (\(hash)) ON CONFLICT DO NOTHING")
                // No survey stays open to a number that asked us to stop; the company whose
                // survey it closes is told (webhook `destination.opted_out`).
                try await connection.query("SELECT release_destination_announcing(\(hash))")
                return .optedOut
            case .optIn:
                try await connection.query("DELETE FROM opt_outs WHERE destination_hash = \(hash)")
                return .optedIn
            case .help:
                return .help
            case .score(let value):
                score = value
            case .bad:
                score = nil
            }
            guard let route = try await connection.query("SELECT company_id, request_id FROM route_reply(\(hash))").single else {
                return .ignored
            }
            let (company, request) = try route.decode((CompanyID, RequestID).self)
            try await Database.enterTenant(company, on: connection)
            // FOR UPDATE: a worker recording this request's send right now is waited for,
            // so the status read is the one that will stand.
            guard let state = try await connection.query(
                """
                SELECT status, score IS NULL AND (respond_by IS NULL OR respond_by > now()) FROM survey_requests
                 WHERE company_id = \(company) AND request_id = \(request) FOR UPDATE
                """
            ).single else { return .ignored }
            let (status, answerable) = try state.decode((String, Bool).self)
            guard answerable else { return .ignored }
            switch status {
            case "queued":
                // A message not yet sent cannot be answered: a text now is meant for some
                // earlier survey (another company's, maybe), not this one.
                let started = try await connection.query(
                    """
                    SELECT 1 FROM sms_jobs AS j JOIN sms_claims AS c ON c.lease_id = j.lease_id
                     WHERE j.company_id = \(company) AND j.request_id = \(request) AND j.claim_position <= c.started_through
                    """)
                guard !started.isEmpty else { return .ignored }
                // The provider call has started but its outcome is not recorded (the phone
                // answered within the moment between the provider taking the message and the
                // worker writing it down): kept, and applied by the worker once it is.
                try await connection.query(
                    """
                    INSERT INTO early_replies (company_id, request_id, provider_message_id, score)
                    VALUES (\(company), \(request), \(messageID), \(score))
                    ON CONFLICT DO NOTHING
                    """)
                return score == nil ? .badResponse(company: company, request: request) : .scored(company: company, request: request)
            case "sent", "delivered":
                break
            default:
                return .ignored
            }
            if let score {
                try await connection.query(
                    """
                    UPDATE survey_requests SET score = \(score), responded_at = now()
                     WHERE company_id = \(company) AND request_id = \(request)
                    """)
                // Answered: the number is free for the next survey.
                try await connection.query("SELECT release_open_surveys(ARRAY[\(hash)]::bytea[], ARRAY[\(request)]::bigint[])")
                return .scored(company: company, request: request)
            }
            try await connection.query(
                "UPDATE survey_requests SET bad_replies = bad_replies + 1 WHERE company_id = \(company) AND request_id = \(request)")
            return .badResponse(company: company, request: request)
        }
    }

    public enum DeliveryStatus: Sendable, Equatable {
        case delivered
        case failed
        /// Intermediate statuses (queued, sending, sent, ...): nothing to record.
        case other

        var storedName: String? {
            switch self {
            case .delivered: "delivered"
            case .failed: "failed"
            case .other: nil
            }
        }
    }

    /// Records a delivery status callback. Idempotent: statuses only move forward. A final
    /// status for a message whose send is not recorded yet is kept for the worker to apply.
    @discardableResult
    public func recordDelivery(_ status: DeliveryStatus, messageID: String) async throws -> Bool {
        guard let name = status.storedName else { return false }
        return try await database.client.withTransaction(deadline: RequestDeadline.current) { connection in
            guard let row = try await connection.query(
                "SELECT company_id, request_id FROM route_delivery_status(\(messageID), \(name))"
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
                try await connection.query("SELECT release_open_surveys(ARRAY[\(hash)]::bytea[], ARRAY[\(request)]::bigint[])")
                return true
            case .other:
                return false
            }
        }
    }

    /// What was sent in `[start, end)`, the basis of the invoice: SMS messages and their
    /// segments, and e-mails.
    public struct Usage: Sendable, Equatable {
        public var messages: Int
        public var segments: Int
        public var emails: Int
        /// Calls answered, and their minutes (each call's duration rounded up to the minute).
        public var calls: Int
        public var callMinutes: Int
    }

    public func usage(company: CompanyID, from start: Date, to end: Date) async throws -> Usage {
        try await database.withTenant(company) { connection in
            let (messages, segments, emails, calls, minutes) = try await connection.query(
                """
                SELECT count(*) FILTER (WHERE channel = 'SMS')::bigint, coalesce(sum(sms_segments), 0)::bigint,
                       count(*) FILTER (WHERE channel = 'EMAIL')::bigint,
                       count(*) FILTER (WHERE channel = 'VOICE' AND call_seconds > 0)::bigint,
                       coalesce(sum(ceil(call_seconds / 60.0)) FILTER (WHERE channel = 'VOICE'), 0)::bigint
                  FROM survey_requests
                 WHERE company_id = \(company) AND sent_at >= \(start) AND sent_at < \(end)
                """
            ).one().decode((Int, Int, Int, Int, Int).self)
            return Usage(messages: messages, segments: segments, emails: emails, calls: calls, callMinutes: minutes)
        }
    }

    /// One UTC day's SMS: queued (what the daily cap counts), and messages and segments
    /// sent (what `usage` adds up over a month).
    public struct DailyUsage: Sendable, Equatable {
        public var day: Date
        public var queued: Int
        public var messages: Int
        public var segments: Int
    }

    /// Each UTC day of `[start, end)` (midnights UTC), in order, days without sending included.
    public func dailyUsage(company: CompanyID, from start: Date, to end: Date) async throws -> [DailyUsage] {
        try await database.read(
            company,
            """
            SELECT d.day, coalesce(u.queued, 0)::bigint, s.messages, s.segments
              FROM generate_series(\(start)::timestamptz, \(end)::timestamptz - interval '24 hours', interval '24 hours') AS d(day)
              LEFT JOIN daily_sms_usage AS u ON u.company_id = \(company) AND u.day = (d.day AT TIME ZONE 'UTC')::date
             CROSS JOIN LATERAL (
                SELECT count(*)::bigint AS messages, coalesce(sum(r.sms_segments), 0)::bigint AS segments
                  FROM survey_requests AS r
                 WHERE r.company_id = \(company) AND r.channel = 'SMS' AND r.sent_at >= d.day AND r.sent_at < d.day + interval '24 hours'
             ) AS s
             ORDER BY d.day
            """
        ).map { row in
            let (day, queued, messages, segments) = try row.decode((Date, Int, Int, Int).self)
            return DailyUsage(day: day, queued: queued, messages: messages, segments: segments)
        }
    }
}
