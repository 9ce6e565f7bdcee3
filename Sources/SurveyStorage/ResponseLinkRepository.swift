import Foundation
import Postgres
import SurveyDomain

/// What an e-mailed survey's links lead to: the request a score link names, the score it
/// records, and the one-click way out. A link says only its token; `route_response_token`
/// (SECURITY DEFINER) turns its hash into the request's pointer, and everything after runs
/// scoped to that company.
public struct ResponseLinkRepository: Sendable {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// The request behind a link, as its landing page shows it.
    public struct LinkedRequest: Sendable, Equatable {
        public var company: CompanyID
        public var request: RequestID
        public var companyName: String
        public var question: String
        public var language: String?
        /// The score given so far, if any (a new choice replaces it).
        public var score: Int?
        /// Until when a score is taken; `nil` while the send is not recorded yet.
        public var respondBy: Date?
        /// Whether a score is still taken: the window is open, and the request neither
        /// failed nor was cancelled.
        public var isOpen: Bool
    }

    /// The request `token` names, or `nil` for a token of no request.
    public func find(_ token: ResponseLinkToken) async throws -> LinkedRequest? {
        try await database.client.withTransaction(deadline: RequestDeadline.current) { connection in
            try await Self.linkedRequest(token, lock: false, on: connection)
        }
    }

    public enum Recorded: Sendable, Equatable {
        /// Recorded; `previous` is the score it replaced.
        case recorded(LinkedRequest, previous: Int?)
        /// Too late (the window closed) or no longer answerable (failed, cancelled).
        case closed(LinkedRequest)
        case unknown
    }

    /// Records `score` for the request `token` names. A second choice within the window
    /// replaces the first, as a second SMS reply would; the first frees the address for the
    /// next survey, as a good SMS reply frees the number.
    public func record(_ score: Int, for token: ResponseLinkToken) async throws -> Recorded {
        precondition((0...10).contains(score), "scores are 0 to 10")
        return try await database.client.withTransaction(deadline: RequestDeadline.current) { connection in
            guard var linked = try await Self.linkedRequest(token, lock: true, on: connection) else { return .unknown }
            guard linked.isOpen else { return .closed(linked) }
            let previous = linked.score
            let hash = try await connection.query(
                """
                UPDATE survey_requests SET score = \(score), responded_at = now()
                 WHERE company_id = \(linked.company) AND request_id = \(linked.request)
                RETURNING destination_hash
                """
            ).one().decode(Data.self)
            if previous == nil {
                try await connection.query(
                    "SELECT release_open_surveys(ARRAY[\(hash)]::bytea[], ARRAY[\(linked.request)]::bigint[])")
            }
            linked.score = score
            return .recorded(linked, previous: previous)
        }
    }

    /// Opts the request's address out of every company's surveys (RFC 8058 one-click, like
    /// STOP by SMS): recorded as the keyed hash only, and any survey still open to it is
    /// closed (its company told, by webhook). Valid as long as the request exists, not only
    /// within its window: a way out must not expire. The request's language (for the page
    /// that says so), or `nil` for a token of no request.
    public func unsubscribe(_ token: ResponseLinkToken) async throws -> Unsubscribed? {
        try await database.client.withTransaction(deadline: RequestDeadline.current) { connection in
            guard let route = try await connection.query(
                "SELECT company_id, request_id FROM route_response_token(\(token.hash))"
            ).single else { return nil }
            let (company, request) = try route.decode((CompanyID, RequestID).self)
            try await Database.enterTenant(company, on: connection)
            guard let row = try await connection.query(
                "SELECT destination_hash, language FROM survey_requests WHERE company_id = \(company) AND request_id = \(request)"
            ).single else { return nil }
            let (hash, language) = try row.decode((Data, String?).self)
            try await connection.query("INSERT INTO opt_outs (destination_hash) VALUES (\(hash)) ON CONFLICT DO NOTHING")
            try await connection.query("SELECT release_destination_announcing(\(hash))")
            return Unsubscribed(language: language)
        }
    }

    public struct Unsubscribed: Sendable, Equatable {
        public var language: String?
    }

    /// The request and its question, scoped to its company from the moment it is known.
    /// `lock`: held until the transaction ends (a second click waits for the first).
    private static func linkedRequest(
        _ token: ResponseLinkToken, lock: Bool, on connection: PostgresConnection
    ) async throws -> LinkedRequest? {
        guard let route = try await connection.query(
            "SELECT company_id, request_id FROM route_response_token(\(token.hash))"
        ).single else { return nil }
        let (company, request) = try route.decode((CompanyID, RequestID).self)
        try await Database.enterTenant(company, on: connection)
        let rows = try await connection.query(
            """
            SELECT c.name, q.body, r.language, r.score, r.respond_by,
                   r.status IN ('queued', 'sent', 'delivered') AND (r.respond_by IS NULL OR r.respond_by > now())
              FROM survey_requests AS r
              JOIN questions AS q ON q.company_id = r.company_id AND q.question_id = r.question_id
              JOIN companies AS c ON c.company_id = r.company_id
             WHERE r.company_id = \(company) AND r.request_id = \(request)
            \(fragment: lock ? "FOR UPDATE OF r" : "")
            """)
        guard let row = rows.single else { return nil }
        let (name, question, language, score, respondBy, isOpen) = try row.decode((String, String, String?, Int?, Date?, Bool).self)
        return LinkedRequest(
            company: company, request: request, companyName: name, question: question, language: language, score: score,
            respondBy: respondBy, isOpen: isOpen)
    }
}
