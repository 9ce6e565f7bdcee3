import Foundation
import Postgres
import SurveyDomain

/// The dashboard's sessions (`sql/0008_dashboard_sessions.sql`): opened by a company's
/// token, found by the hash of their cookie, valid while the token is and while used.
public struct DashboardSessionRepository: Sendable {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// Who a session stands for.
    public struct Session: Sendable, Equatable {
        public var id: DashboardSessionID
        public var company: CompanyID
        public var token: TokenID
        public var scope: TokenScope
    }

    /// Opens a session for a token already authenticated, and purges the company's
    /// sessions idle past the limit on the way (a sign-in is rare; the janitor does the rest).
    public func open(_ secret: DashboardSessionSecret, token: TokenIdentity) async throws -> Session {
        let idle = Self.seconds(DashboardSessionSecret.idleLimit)
        return try await database.withTenant(token.company) { connection in
            try await connection.query(
                """
                DELETE FROM dashboard_sessions
                 WHERE company_id = \(token.company) AND last_seen_at < now() - make_interval(secs => \(idle))
                """)
            let id = try await connection.query(
                """
                INSERT INTO dashboard_sessions (company_id, token_id, session_hash)
                VALUES (\(token.company), \(token.token), \(secret.hash))
                RETURNING session_id
                """
            ).one().decode(DashboardSessionID.self)
            return Session(id: id, company: token.company, token: token.token, scope: token.scope)
        }
    }

    /// The session whose cookie is `secret`, or `nil` if there is none, it has been idle
    /// past the limit, or its token was revoked. Touches its last use (once a minute).
    public func find(_ secret: DashboardSessionSecret) async throws -> Session? {
        // Idempotent (at most it touches last_seen_at again): safe to retry.
        try await database.client.withConnection(retryingIfLost: true, deadline: RequestDeadline.current) { connection in
            try await connection.query(
                """
                SELECT company_id, session_id, token_id, scope
                  FROM dashboard_session(\(secret.hash), \(Int(DashboardSessionSecret.idleLimit.components.seconds)))
                """
            ).single.map { row in
                let (company, id, token, scope) = try row.decode((CompanyID, DashboardSessionID, TokenID, String).self)
                return Session(id: id, company: company, token: token, scope: TokenScope(rawValue: scope) ?? .read)
            }
        }
    }

    /// Ends a session (sign-out).
    public func close(_ session: Session) async throws {
        try await database.withTenant(session.company) { connection in
            try await connection.query(
                "DELETE FROM dashboard_sessions WHERE company_id = \(session.company) AND session_id = \(session.id)")
        }
    }

    private static func seconds(_ duration: Duration) -> Int { Int(duration.components.seconds) }
}
