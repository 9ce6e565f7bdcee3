import Foundation
import Postgres
import SurveyDomain

/// A company's webhook endpoints: registration, changes, secret rotation. Always within one
/// company; the URL is checked (and resolved) by the caller before it comes here.
public struct WebhookEndpointRepository: Sendable {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// How long a rotated-out secret still signs.
    public static let rotationOverlap: Duration = .seconds(24 * 3600)

    /// Registers an endpoint with a new secret; `request.expired` subscribers start the
    /// company's expiry sweep from now (no flood of old windows).
    public func create(
        url: String, events: [WebhookEventType], description: String?, secret: WebhookSecret, company: CompanyID
    ) async throws -> WebhookEndpoint {
        try await database.withTenant(company) { connection in
            // Locked, so two registrations at once cannot both pass the count.
            try await connection.query("SELECT 1 FROM companies WHERE company_id = \(company) FOR NO KEY UPDATE")
            let count = try await connection.query(
                "SELECT count(*)::bigint FROM webhook_endpoints WHERE company_id = \(company)"
            ).one().decode(Int.self)
            guard count < WebhookEndpoint.maximumPerCompany else {
                throw StorageError.tooManyWebhookEndpoints(limit: WebhookEndpoint.maximumPerCompany)
            }
            let row = try await connection.query(
                """
                INSERT INTO webhook_endpoints (company_id, url, events, description, secret)
                VALUES (\(company), \(url), \(events.map(\.rawValue))::text[], \(description), \(secret.key))
                RETURNING \(fragment: Self.columns)
                """
            ).one()
            try await startExpirySweep(events, company: company, on: connection)
            return try Self.endpoint(row)
        }
    }

    public func list(company: CompanyID) async throws -> [WebhookEndpoint] {
        try await database.read(
            company, "SELECT \(fragment: Self.columns) FROM webhook_endpoints WHERE company_id = \(company) ORDER BY endpoint_id"
        ).map(Self.endpoint)
    }

    public func find(_ id: WebhookEndpointID, company: CompanyID) async throws -> WebhookEndpoint? {
        try await database.read(
            company,
            "SELECT \(fragment: Self.columns) FROM webhook_endpoints WHERE company_id = \(company) AND endpoint_id = \(id)"
        ).single.map(Self.endpoint)
    }

    /// Applies a `PATCH`. Enabling clears the reason it was disabled and its failure streak.
    public func update(_ id: WebhookEndpointID, _ change: WebhookEndpointChange, company: CompanyID) async throws -> WebhookEndpoint {
        try await database.withTenant(company) { connection in
            let description: String? = change.description ?? nil
            let row = try await connection.query(
                """
                UPDATE webhook_endpoints
                   SET url = coalesce(\(change.url), url),
                       events = coalesce(\(change.events?.map(\.rawValue))::text[], events),
                       description = CASE WHEN \(change.description != nil) THEN \(description) ELSE description END,
                       enabled = coalesce(\(change.enabled), enabled),
                       disabled_reason = CASE \(change.enabled)::boolean WHEN true THEN NULL
                                         WHEN false THEN coalesce(disabled_reason, \(WebhookEndpoint.disabledByCompany))
                                         ELSE disabled_reason END,
                       disabled_at = CASE \(change.enabled)::boolean WHEN true THEN NULL
                                     WHEN false THEN coalesce(disabled_at, now()) ELSE disabled_at END,
                       failing_since = CASE WHEN \(change.enabled) AND NOT enabled THEN NULL ELSE failing_since END
                 WHERE company_id = \(company) AND endpoint_id = \(id)
                RETURNING \(fragment: Self.columns)
                """
            ).single
            guard let row else { throw StorageError.notFound }
            if let events = change.events { try await startExpirySweep(events, company: company, on: connection) }
            return try Self.endpoint(row)
        }
    }

    public func delete(_ id: WebhookEndpointID, company: CompanyID) async throws {
        try await database.withTenant(company) { connection in
            let deleted = try await connection.query(
                "DELETE FROM webhook_endpoints WHERE company_id = \(company) AND endpoint_id = \(id)")
            guard deleted.affectedRows == 1 else { throw StorageError.notFound }
        }
    }

    /// A new secret; the current one keeps signing for `rotationOverlap` beside it.
    public func rotateSecret(_ id: WebhookEndpointID, to secret: WebhookSecret, company: CompanyID) async throws -> WebhookEndpoint {
        try await database.withTenant(company) { connection in
            let overlap = Int(Self.rotationOverlap.components.seconds)
            let row = try await connection.query(
                """
                UPDATE webhook_endpoints
                   SET previous_secret = secret, previous_secret_until = now() + make_interval(secs => \(overlap)),
                       secret = \(secret.key)
                 WHERE company_id = \(company) AND endpoint_id = \(id)
                RETURNING \(fragment: Self.columns)
                """
            ).single
            guard let row else { throw StorageError.notFound }
            return try Self.endpoint(row)
        }
    }

    private func startExpirySweep(_ events: [WebhookEventType], company: CompanyID, on connection: PostgresConnection) async throws {
        guard events.contains(.requestExpired) else { return }
        try await connection.query(
            "INSERT INTO webhook_expiry_cursors (company_id, through) VALUES (\(company), now()) ON CONFLICT DO NOTHING")
    }

    static let columns: StaticString = """
        endpoint_id, url, events, description, enabled, disabled_reason, disabled_at, failing_since,
        CASE WHEN previous_secret_until > now() THEN previous_secret_until END, created_at
        """

    static func endpoint(_ row: PostgresRow) throws -> WebhookEndpoint {
        let (id, url, events, description, enabled, reason, disabledAt, failingSince, previousUntil, created) = try row.decode(
            (WebhookEndpointID, String, [String], String?, Bool, String?, Date?, Date?, Date?, Date).self)
        return WebhookEndpoint(
            id: id, url: url, events: events.compactMap(WebhookEventType.init(rawValue:)), description: description,
            enabled: enabled, disabledReason: reason, disabledAt: disabledAt, failingSince: failingSince,
            previousSecretExpiresAt: previousUntil, createdAt: created)
    }
}
