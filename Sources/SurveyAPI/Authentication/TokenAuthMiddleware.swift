import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SurveyDomain
import SurveyStorage

/// Resolves `Authorization: Bearer <token>` to the company that owns the token, then
/// applies the token's rate limit and scope.
///
/// Any authentication failure is the same 401, so the answer reveals nothing about why.
/// Failures are counted per client address; past that limit the address gets 429 without
/// its tokens being looked up (a token this replica already knows valid still passes, so
/// one misbehaving client behind a shared address cannot lock out the rest).
struct TokenAuthMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    let authenticator: TokenAuthenticator
    let limiter: SharedRateLimiter
    let limits: APIConfiguration.Limits
    let addressHasher: DestinationHasher

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let token = request.headers[.authorization].flatMap(bearerToken).map(APIToken.init(secret:))
        let addressKey = failureKey(request, context)
        if let wait = limiter.blockedFor(addressKey), !(token.map(authenticator.isKnown) ?? false) {
            throw Problem.tooManyFailedAuthentications(retryAfter: wait)
        }
        guard let token, let identity = try await authenticator.identity(of: token) else {
            if case .limited(let wait) = await limiter.acquire(addressKey, limit: limits.failedAuthentication) {
                throw Problem.tooManyFailedAuthentications(retryAfter: wait)
            }
            throw Problem.unauthorized
        }
        if case .limited(let wait) = await limiter.acquire("token:\(identity.token)", limit: limits.perToken) {
            throw Problem.rateLimited(retryAfter: wait)
        }
        if identity.scope != .write, !request.method.isSafe {
            throw Problem.insufficientScope
        }
        var context = context
        context.company = identity.company
        context.logger[metadataKey: "company_id"] = "\(identity.company)"
        context.logger[metadataKey: "token_id"] = "\(identity.token)"
        return try await next(request, context)
    }

    /// The bucket of failed authentications of the client's address: a keyed hash, so no
    /// address is stored.
    private func failureKey(_ request: Request, _ context: Context) -> String {
        let address = clientAddress(request, context, trustForwardedFor: limits.trustForwardedFor) ?? "unknown"
        let digest = addressHasher.fingerprint(Data(address.utf8)).prefix(16)
        return "auth-failures:" + digest.map { String(format: "%02x", $0) }.joined()
    }
}

/// The client's address: the peer of the connection, or behind a trusted load balancer the
/// last `X-Forwarded-For` entry (the one the balancer appended; earlier ones are the
/// client's word).
func clientAddress(_ request: Request, _ context: AppRequestContext, trustForwardedFor: Bool) -> String? {
    if trustForwardedFor, let forwarded = request.headers[.xForwardedFor],
        let last = forwarded.split(separator: ",").last?.trimmingCharacters(in: .whitespaces), !last.isEmpty
    {
        return String(last.prefix(64))
    }
    return context.remoteAddress?.ipAddress
}

extension HTTPRequest.Method {
    /// GET, HEAD and OPTIONS change nothing (RFC 9110 §9.2.1); a `read` token may use them.
    var isSafe: Bool { self == .get || self == .head || self == .options }
}

extension HTTPField.Name {
    static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
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
