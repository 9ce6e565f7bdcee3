import Foundation
import Postgres
import SurveyDomain

/// Companies and their API tokens: what the operator's admin API and CLI manage.
public struct CompanyRepository: Sendable {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// Creates a company with its first API token. The token's secret is returned once
    /// and never stored.
    public func create(name: String) async throws -> (Company, TokenID, APIToken) {
        // Reserve the id first: row-level security only lets a transaction write rows of
        // the company it is scoped to.
        let id = try await database.client.withConnection { connection in
            try await connection.query("SELECT nextval('companies_company_id_seq')").one().decode(CompanyID.self, column: "nextval")
        }
        return try await database.withTenant(id) { connection in
            let createdAt = try await connection.query(
                "INSERT INTO companies (company_id, name) VALUES (\(id), \(name)) RETURNING created_at"
            ).one().decode(Date.self, column: "created_at")
            let (tokenID, token) = try await insertToken(company: id, on: connection)
            return (Company(id: id, name: name, createdAt: createdAt), tokenID, token)
        }
    }

    public func find(_ id: CompanyID) async throws -> Company? {
        try await database.withTenant(id) { connection in
            try await connection.query("SELECT name, created_at FROM companies WHERE company_id = \(id)").single.map {
                let (name, createdAt) = try $0.decode((String, Date).self)
                return Company(id: id, name: name, createdAt: createdAt)
            }
        }
    }

    /// Issues another token for an existing company.
    public func createToken(company: CompanyID) async throws -> (TokenID, APIToken) {
        try await database.withTenant(company) { connection in
            let exists = try await connection.query("SELECT 1 FROM companies WHERE company_id = \(company)")
            guard !exists.isEmpty else { throw StorageError.notFound }
            return try await insertToken(company: company, on: connection)
        }
    }

    /// Revokes a token of a company; revoking twice is fine, an unknown token is `notFound`.
    public func revokeToken(_ token: TokenID, company: CompanyID) async throws {
        try await database.withTenant(company) { connection in
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

    /// The company a presented token belongs to, or `nil` if it is unknown or revoked.
    public func authenticate(_ token: APIToken) async throws -> (CompanyID, TokenID)? {
        guard token.isWellFormed else { return nil }
        return try await database.client.withConnection { connection in
            try await connection.query("SELECT company_id, token_id FROM authenticate_api_token(\(token.hash))")
                .single?.decode((CompanyID, TokenID).self)
        }
    }

    private func insertToken(company: CompanyID, on connection: PostgresConnection) async throws -> (TokenID, APIToken) {
        let token = APIToken.generate()
        let id = try await connection.query(
            """
            INSERT INTO api_tokens (company_id, token_hash, token_hint)
            VALUES (\(company), \(token.hash), \(token.hint))
            RETURNING token_id
            """
        ).one().decode(TokenID.self, column: "token_id")
        return (id, token)
    }
}
