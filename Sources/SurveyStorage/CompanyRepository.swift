import Foundation
import Postgres
import SurveyDomain

/// Companies and their API tokens: what the operator's admin API and CLI manage.
public struct CompanyRepository: Sendable {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// Creates a company with its first API token (of scope `write`). The token's secret is
    /// returned once and never stored.
    public func create(
        name: String, settings: CompanySettings = CompanySettings()
    ) async throws -> (Company, TokenID, APIToken) {
        // Reserve the id first: row-level security only lets a transaction write rows of
        // the company it is scoped to.
        let id = try await database.client.withConnection { connection in
            try await connection.query("SELECT nextval('companies_company_id_seq')").one().decode(CompanyID.self, column: "nextval")
        }
        return try await database.withTenant(id) { connection in
            let createdAt = try await connection.query(
                """
                INSERT INTO companies (company_id, name, resurvey_days, daily_sms_cap, daily_email_cap, daily_voice_cap,
                                       voice_call_attempts, voice_retry_minutes, rate_limit_per_second,
                                       rate_limit_burst, quiet_hours_start, quiet_hours_end, time_zone)
                VALUES (\(id), \(name), \(settings.resurveyDays), \(settings.dailySMSCap), \(settings.dailyEmailCap),
                        \(settings.dailyVoiceCap), \(settings.voiceRetry.attempts), \(settings.voiceRetry.minutes),
                        \(settings.requestRateLimit?.ratePerSecond), \(settings.requestRateLimit?.burst),
                        \(settings.quietHours?.start.description)::time, \(settings.quietHours?.end.description)::time, \(settings.timeZone))
                RETURNING created_at
                """
            ).one().decode(Date.self, column: "created_at")
            let (tokenID, token) = try await insertToken(company: id, scope: .write, on: connection)
            return (Company(id: id, name: name, createdAt: createdAt, settings: settings), tokenID, token)
        }
    }

    public func find(_ id: CompanyID) async throws -> Company? {
        try await database.withTenant(id) { connection in
            try await connection.query(
                """
                SELECT \(fragment: Self.settingsColumns) FROM companies WHERE company_id = \(id)
                """
            ).single.map(Self.company(id))
        }
    }

    /// Changes some settings of a company and returns it as it now is.
    public func update(_ id: CompanyID, _ change: CompanySettingsChange) async throws -> Company {
        // The row locked, the change applied by the domain's rule, the result written whole:
        // one place decides what a change means.
        try await database.withTenant(id) { connection in
            guard
                let row = try await connection.query(
                    "SELECT \(fragment: Self.settingsColumns) FROM companies WHERE company_id = \(id) FOR UPDATE"
                ).single
            else { throw StorageError.notFound }
            var company = try Self.company(id)(row)
            company.settings = change.applied(to: company.settings)
            let settings = company.settings
            // Unchanged columns are not written: the token caches are told only of a changed
            // rate limit (a trigger compares old and new).
            try await connection.query(
                """
                UPDATE companies
                   SET resurvey_days = \(settings.resurveyDays), daily_sms_cap = \(settings.dailySMSCap),
                       daily_email_cap = \(settings.dailyEmailCap), daily_voice_cap = \(settings.dailyVoiceCap),
                       voice_call_attempts = \(settings.voiceRetry.attempts), voice_retry_minutes = \(settings.voiceRetry.minutes),
                       rate_limit_per_second = \(settings.requestRateLimit?.ratePerSecond),
                       rate_limit_burst = \(settings.requestRateLimit?.burst),
                       quiet_hours_start = \(settings.quietHours?.start.description)::time,
                       quiet_hours_end = \(settings.quietHours?.end.description)::time, time_zone = \(settings.timeZone)
                 WHERE company_id = \(id)
                """)
            return company
        }
    }

    /// What `company(_:)` reads, in its order.
    static let settingsColumns: StaticString = """
        name, created_at, resurvey_days, daily_sms_cap, daily_email_cap, daily_voice_cap, voice_call_attempts,
        voice_retry_minutes, rate_limit_per_second, rate_limit_burst,
        to_char(quiet_hours_start, 'HH24:MI'), to_char(quiet_hours_end, 'HH24:MI'), time_zone
        """

    static func company(_ id: CompanyID) -> (PostgresRow) throws -> Company {
        { row in
            let (name, createdAt, resurveyDays, cap, emailCap, voiceCap, attempts, minutes, rate, burst, quietStart, quietEnd, timeZone) =
                try row.decode((String, Date, Int, Int, Int, Int, Int, Int, Double?, Int?, String?, String?, String).self)
            return Company(
                id: id, name: name, createdAt: createdAt,
                settings: CompanySettings(
                    resurveyDays: resurveyDays, dailySMSCap: cap, dailyEmailCap: emailCap, dailyVoiceCap: voiceCap,
                    voiceRetry: VoiceRetryRule(attempts: attempts, minutes: minutes), requestRateLimit: rateLimit(rate, burst),
                    quietHours: quietHours(quietStart, quietEnd), timeZone: timeZone))
        }
    }

    static func quietHours(_ start: String?, _ end: String?) -> QuietHours? {
        guard let start = start.flatMap(TimeOfDay.init(parsing:)), let end = end.flatMap(TimeOfDay.init(parsing:)) else { return nil }
        return QuietHours(start: start, end: end)
    }

    /// A company's own limit, when both halves are set (the admin API sets them together).
    static func rateLimit(_ rate: Double?, _ burst: Int?) -> RateLimit? {
        guard let rate, let burst, rate > 0, burst >= 1 else { return nil }
        return RateLimit(ratePerSecond: rate, burst: burst)
    }

    /// The company's daily caps and what it queued today (UTC), per channel.
    public func allowances(_ id: CompanyID) async throws -> DailyAllowances {
        try await database.withTenant(id) { connection in
            try await Self.allowances(id, on: connection)
        }
    }

    static func allowances(_ id: CompanyID, on connection: PostgresConnection) async throws -> DailyAllowances {
        let row = try await connection.query(
            """
            SELECT c.daily_sms_cap, coalesce(u.queued, 0), c.daily_email_cap, coalesce(u.emails_queued, 0),
                   c.daily_voice_cap, coalesce(u.calls_queued, 0)
              FROM companies AS c
              LEFT JOIN daily_sms_usage AS u
                ON u.company_id = c.company_id AND u.day = (now() AT TIME ZONE 'UTC')::date
             WHERE c.company_id = \(id)
            """
        ).single
        guard let row else { throw StorageError.notFound }
        let (smsCap, sms, emailCap, emails, voiceCap, calls) = try row.decode((Int, Int, Int, Int, Int, Int).self)
        return DailyAllowances(
            sms: DailyAllowance(cap: smsCap, queuedToday: sms), email: DailyAllowance(cap: emailCap, queuedToday: emails),
            voice: DailyAllowance(cap: voiceCap, queuedToday: calls))
    }

    /// Issues another token for an existing company.
    public func createToken(company: CompanyID, scope: TokenScope = .write) async throws -> (TokenID, APIToken) {
        try await database.withTenant(company) { connection in
            let exists = try await connection.query("SELECT 1 FROM companies WHERE company_id = \(company)")
            guard !exists.isEmpty else { throw StorageError.notFound }
            return try await insertToken(company: company, scope: scope, on: connection)
        }
    }

    /// A company's tokens, revoked ones included, oldest first: never their secrets.
    public func tokens(company: CompanyID) async throws -> [TokenRecord] {
        try await database.withTenant(company) { connection in
            let exists = try await connection.query("SELECT 1 FROM companies WHERE company_id = \(company)")
            guard !exists.isEmpty else { throw StorageError.notFound }
            return try await connection.query(
                """
                SELECT token_id, token_hint, scope, created_at, last_used_at, revoked_at
                  FROM api_tokens WHERE company_id = \(company) ORDER BY token_id
                """
            ).map { row in
                let (id, hint, scope, createdAt, lastUsedAt, revokedAt) = try row.decode(
                    (TokenID, String, String, Date, Date?, Date?).self)
                return TokenRecord(
                    id: id, hint: hint, scope: TokenScope(rawValue: scope) ?? .read, createdAt: createdAt,
                    lastUsedAt: lastUsedAt, revokedAt: revokedAt)
            }
        }
    }

    /// Revokes a token of a company; revoking twice is fine, an unknown token is `notFound`.
    /// With `keepingAnAdmin` (the company acting for itself), the company's last active
    /// `admin` token is not revoked (`lastAdminToken`): it would lock its administrator out.
    public func revokeToken(_ token: TokenID, company: CompanyID, keepingAnAdmin: Bool = false) async throws {
        try await database.withTenant(company) { connection in
            if keepingAnAdmin {
                // Every active admin token locked, so two revocations of the last two wait
                // for each other and the second sees one left.
                let admins = try await connection.query(
                    """
                    SELECT token_id FROM api_tokens
                     WHERE company_id = \(company) AND scope = 'admin' AND revoked_at IS NULL
                       FOR UPDATE
                    """
                ).map { try $0.decode(TokenID.self) }
                if admins == [token] { throw StorageError.lastAdminToken }
            }
            let updated = try await connection.query(
                """
                UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())
                 WHERE company_id = \(company) AND token_id = \(token)
                """)
            guard updated.affectedRows == 1 else { throw StorageError.notFound }
        }
    }

    /// The company a token id belongs to, for the operator's CLI (which knows only the id).
    public func company(ofToken token: TokenID) async throws -> CompanyID? {
        try await database.client.withConnection { connection in
            try await connection.query("SELECT api_token_company(\(token)) AS company_id").one()
                .decode(CompanyID?.self, column: "company_id")
        }
    }

    /// Who a presented token is, or `nil` if it is unknown or revoked.
    public func authenticate(_ token: APIToken) async throws -> TokenIdentity? {
        guard token.isWellFormed else { return nil }
        return try await authenticate(hash: token.hash)
    }

    /// Who the token with this SHA-256 is, or `nil` if it is unknown or revoked.
    public func authenticate(hash: Data) async throws -> TokenIdentity? {
        // Idempotent (at most it touches last_used_at again): safe to retry.
        try await database.client.withConnection(retryingIfLost: true, deadline: RequestDeadline.current) { connection in
            try await connection.query(
                """
                SELECT company_id, token_id, scope, rate_limit_per_second, rate_limit_burst
                  FROM authenticate_api_token_limited(\(hash))
                """
            ).single.map { row in
                let (company, token, scope, rate, burst) = try row.decode((CompanyID, TokenID, String, Double?, Int?).self)
                // A scope this build does not know grants the least.
                return TokenIdentity(
                    company: company, token: token, scope: TokenScope(rawValue: scope) ?? .read,
                    companyLimit: Self.rateLimit(rate, burst))
            }
        }
    }

    private func insertToken(
        company: CompanyID, scope: TokenScope, on connection: PostgresConnection
    ) async throws -> (TokenID, APIToken) {
        let token = APIToken.generate()
        let id = try await connection.query(
            """
            INSERT INTO api_tokens (company_id, token_hash, token_hint, scope)
            VALUES (\(company), \(token.hash), \(token.hint), \(scope.rawValue))
            RETURNING token_id
            """
        ).one().decode(TokenID.self, column: "token_id")
        return (id, token)
    }
}

/// What an authenticated token stands for.
public struct TokenIdentity: Sendable, Equatable {
    public var company: CompanyID
    public var token: TokenID
    public var scope: TokenScope
    /// The company's own request rate; `nil` takes the service's default.
    public var companyLimit: RateLimit?

    public init(company: CompanyID, token: TokenID, scope: TokenScope, companyLimit: RateLimit? = nil) {
        self.company = company
        self.token = token
        self.scope = scope
        self.companyLimit = companyLimit
    }
}

/// A token as the operator sees it in listings.
public struct TokenRecord: Sendable, Equatable {
    public var id: TokenID
    public var hint: String
    public var scope: TokenScope
    public var createdAt: Date
    public var lastUsedAt: Date?
    public var revokedAt: Date?
}
