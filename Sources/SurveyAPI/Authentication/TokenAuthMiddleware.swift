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
/// Failures are counted per client address; past that limit the address gets 429 for
/// every request without a valid token. Valid tokens still pass, so one misbehaving
/// client behind a shared address cannot lock out the rest. Malformed tokens cost no
/// lookup (`APIToken.isWellFormed`).
struct TokenAuthMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    let authenticator: TokenAuthenticator
    let limiter: SharedRateLimiter
    let limits: APIConfiguration.Limits
    let addressHasher: DestinationHasher

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let token = request.headers[.authorization].flatMap(bearerToken).map(APIToken.init(secret:))
        let addressKey = failureKey(request, context)
        // A token-shaped secret is always looked up, so a valid token passes even from an
        // address that others behind the same balancer or NAT got blocked.
        let identity = try await token.asyncFlatMap { try await authenticator.identity(of: $0) }
        guard let identity else {
            if let wait = limiter.blockedFor(addressKey) { throw Problem.tooManyFailedAuthentications(retryAfter: wait) }
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

    private func failureKey(_ request: Request, _ context: Context) -> String {
        SurveyAPI.failureKey(request, context, trustForwardedFor: limits.trustForwardedFor, hasher: addressHasher)
    }
}

/// The bucket of failed authentications of the client's address: a keyed hash, so no
/// address is stored.
func failureKey(_ request: Request, _ context: AppRequestContext, trustForwardedFor: Bool, hasher: DestinationHasher) -> String {
    let address = clientAddress(request, context, trustForwardedFor: trustForwardedFor) ?? "unknown"
    let digest = hasher.fingerprint(Data(address.utf8)).prefix(16)
    return "auth-failures:" + digest.map { String(format: "%02x", $0) }.joined()
}

extension Optional {
    func asyncFlatMap<U>(_ transform: (Wrapped) async throws -> U?) async rethrows -> U? {
        guard let value = self else { return nil }
        return try await transform(value)
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

/// Guards the operator's admin API with `ADMIN_TOKEN`, compared in constant time, with
/// the same per-address limit on failures as the tenant API.
struct AdminAuthMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    let adminToken: String
    let limiter: SharedRateLimiter
    let limits: APIConfiguration.Limits
    let addressHasher: DestinationHasher

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let secret = request.headers[.authorization].flatMap(bearerToken), constantTimeEquals(secret, adminToken) else {
            let key = failureKey(request, context, trustForwardedFor: limits.trustForwardedFor, hasher: addressHasher)
            if let wait = limiter.blockedFor(key) { throw Problem.tooManyFailedAuthentications(retryAfter: wait) }
            if case .limited(let wait) = await limiter.acquire(key, limit: limits.failedAuthentication) {
                throw Problem.tooManyFailedAuthentications(retryAfter: wait)
            }
            throw Problem.unauthorized
        }
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
