import Foundation
import Hummingbird
import Logging
import SurveyDomain
import SurveyStorage

/// Resolves `Authorization: Bearer <token>` to the company that owns the token.
/// Any failure is the same 401, so the answer reveals nothing about why.
struct TokenAuthMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    let companies: CompanyRepository

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let secret = request.headers[.authorization].flatMap(bearerToken),
            let (company, _) = try await companies.authenticate(APIToken(secret: secret))
        else { throw Problem.unauthorized }
        var context = context
        context.company = company
        context.logger[metadataKey: "company_id"] = "\(company)"
        return try await next(request, context)
    }
}

/// Guards the operator's admin API with `ADMIN_TOKEN`, compared in constant time.
struct AdminAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let adminToken: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let secret = request.headers[.authorization].flatMap(bearerToken),
            constantTimeEquals(secret, adminToken)
        else { throw Problem.unauthorized }
        return try await next(request, context)
    }
}

/// The token of an `Authorization` header using the Bearer scheme (case-insensitive, RFC 6750).
func bearerToken(_ header: String) -> String? {
    let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
    guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
    let token = parts[1].trimmingCharacters(in: .whitespaces)
    return token.isEmpty ? nil : token
}
