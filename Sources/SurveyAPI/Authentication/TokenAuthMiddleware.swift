import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SurveyDomain
import SurveyStorage

/// Resolves `Authorization: Bearer <token>` to the company that owns the token, then
/// applies the token's rate limit, the company's (all its tokens together, so more tokens
/// do not buy more of the service), and the token's scope.
///
/// Any authentication failure is the same 401, so the answer reveals nothing about why.
/// Failures are counted per client address; past that limit the address gets 429 for
/// every request without a valid token. Valid tokens still pass, so one misbehaving
/// client behind a shared address cannot lock out the rest. Malformed tokens cost no
/// lookup (`APIToken.isWellFormed`).
struct TokenAuthMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    let authenticator: TokenAuthenticator
    let limiter: SharedRateLimiter<ContinuousClock>
    let limits: APIConfiguration.Limits
    let failures: FailedAuthentications

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let token = request.headers[.authorization].flatMap(bearerToken).map(APIToken.init(secret:))
        // A token-shaped secret is always looked up, so a valid token passes even from an
        // address that others behind the same balancer or NAT got blocked.
        let identity = try await token.asyncFlatMap { try await authenticator.identity(of: $0) }
        guard let identity else { throw await failures.refusal(request, context) }
        if case .limited(let wait) = await limiter.acquire("token:\(identity.token)", limit: limits.perToken) {
            throw Problem.rateLimited(retryAfter: wait)
        }
        let companyLimit = identity.companyLimit ?? limits.perCompany
        if case .limited(let wait) = await limiter.acquire("company:\(identity.company)", limit: companyLimit) {
            throw Problem.companyRateLimited(retryAfter: wait)
        }
        if identity.scope < .write, !request.method.isSafe {
            throw Problem.insufficientScope
        }
        var context = context
        context.company = identity.company
        context.scope = identity.scope
        // Formatted only if a line is written.
        context.logger[metadataKey: "company_id"] = .stringConvertible(identity.company)
        context.logger[metadataKey: "token_id"] = .stringConvertible(identity.token)
        return try await next(request, context)
    }
}

/// Failed authentications, counted per client address in the shared buckets; past the
/// limit the answer is 429 instead of 401. The address is kept only as a keyed hash, and
/// only worked out when an authentication fails (never on the path of a valid request).
struct FailedAuthentications: Sendable {
    let limiter: SharedRateLimiter<ContinuousClock>
    let limit: RateLimit
    let trustForwardedFor: Bool
    let addressHasher: DestinationHasher

    /// Counts this failure and says what to answer.
    func refusal(_ request: Request, _ context: AppRequestContext) async -> Problem {
        let address = clientAddress(request, context, trustForwardedFor: trustForwardedFor) ?? "unknown"
        let key = "auth-failures:" + addressHasher.fingerprint(Data(address.utf8)).prefix(16).map { String(format: "%02x", $0) }.joined()
        if let wait = limiter.blockedFor(key) { return .tooManyFailedAuthentications(retryAfter: wait) }
        if case .limited(let wait) = await limiter.acquire(key, limit: limit) {
            return .tooManyFailedAuthentications(retryAfter: wait)
        }
        return .unauthorized
    }
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
    let failures: FailedAuthentications

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let secret = request.headers[.authorization].flatMap(bearerToken), constantTimeEquals(secret, adminToken) else {
            throw await failures.refusal(request, context)
        }
        return try await next(request, context)
    }
}

/// The token of an `Authorization` header using the Bearer scheme (case-insensitive, RFC 6750).
func bearerToken(_ header: String) -> String? {
    // Split by hand on the UTF-8 bytes: this runs on every request, and Foundation's
    // trimming bridges through NSString.
    let bytes = header.utf8
    let isBlank = { (byte: UInt8) in byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
    guard let schemeStart = bytes.firstIndex(where: { !isBlank($0) }),
        let schemeEnd = bytes[schemeStart...].firstIndex(where: isBlank),
        let tokenStart = bytes[schemeEnd...].firstIndex(where: { !isBlank($0) }),
        let tokenLast = bytes.lastIndex(where: { !isBlank($0) })
    else { return nil }
    let scheme = bytes[schemeStart..<schemeEnd]
    guard scheme.count == 6, zip(scheme, "bearer".utf8).allSatisfy({ $0 | 0x20 == $1 }) else { return nil }
    return String(header[tokenStart...tokenLast])
}
