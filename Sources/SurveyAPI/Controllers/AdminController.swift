import Hummingbird
import SurveyDomain
import SurveyStorage

/// `/admin`: the operator's API to create companies and manage their tokens.
struct AdminController<Context: RequestContext> {
    let companies: CompanyRepository

    func addRoutes(to routes: Routes<Context>) {
        routes.on(.post, "companies", use: createCompany)
        routes.on(.post, "companies/:id/tokens", use: createToken)
        routes.on(.delete, "companies/:id/tokens/:tokenId", use: revokeToken)
    }

    struct CreatedCompany: JSONResponse {
        var id: Int64
        var name: String
        var createdAt: String
        /// Shown once, never stored.
        var token: String
        var json: JSONDocument {
            .object([("id", .integer(id)), ("name", .string(name)), ("createdAt", .string(createdAt)), ("token", .string(token))])
        }
    }

    struct CreatedToken: JSONResponse {
        var id: Int64
        var token: String
        var json: JSONDocument { .object([("id", .integer(id)), ("token", .string(token))]) }
    }

    @Sendable func createCompany(request: Request, context: Context) async throws -> JSONReply<CreatedCompany> {
        let object = try await JSONValue.object(from: request, context: context)
        var validator = FieldValidator()
        let name = validator.string(object, "name", at: "name", length: CompanyLimits.nameLength)
        try validator.check()
        let (company, _, token) = try await companies.create(name: name!)
        return JSONReply(
            status: .created,
            body: CreatedCompany(
                id: company.id.rawValue, name: company.name, createdAt: Timestamp.format(company.createdAt),
                token: token.secret))
    }

    @Sendable func createToken(request: Request, context: Context) async throws -> JSONReply<CreatedToken> {
        let company = try id(CompanyID.self, "id", context)
        do {
            let (tokenID, token) = try await companies.createToken(company: company)
            return JSONReply(status: .created, body: CreatedToken(id: tokenID.rawValue, token: token.secret))
        } catch StorageError.notFound {
            throw Problem.notFound("No company \(company).")
        }
    }

    @Sendable func revokeToken(request: Request, context: Context) async throws -> HTTPResponse.Status {
        let company = try id(CompanyID.self, "id", context)
        let token = try id(TokenID.self, "tokenId", context)
        do {
            try await companies.revokeToken(token, company: company)
        } catch StorageError.notFound {
            throw Problem.notFound("No token \(token) for company \(company).")
        }
        return .noContent
    }

    private func id<Tag>(_ type: Identifier<Tag>.Type, _ name: String, _ context: Context) throws -> Identifier<Tag> {
        guard let id = Identifier<Tag>(parsing: (context.parameters.get(name) ?? "")[...]) else {
            throw Problem.invalidField(name, "must be a positive integer")
        }
        return id
    }
}
