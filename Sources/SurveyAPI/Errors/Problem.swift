import Foundation
import Hummingbird
import SurveyDomain

/// An RFC 9457 problem: every error the API returns is one of these, as
/// `application/problem+json`.
public struct Problem: HTTPResponseError, Sendable, Equatable {
    public struct FieldError: Sendable, Equatable {
        /// A JSON path into the request (`questions[1].language`) or a parameter name.
        public var field: String
        public var message: String

        public init(field: String, message: String) {
            self.field = field
            self.message = message
        }
    }

    public var status: HTTPResponse.Status
    public var type: String
    public var title: String
    public var detail: String?
    public var errors: [FieldError]?
    public var headers: HTTPFields

    public init(
        status: HTTPResponse.Status, type: String = "about:blank", title: String? = nil, detail: String? = nil,
        errors: [FieldError]? = nil, headers: HTTPFields = [:]
    ) {
        self.status = status
        self.type = type
        self.title = title ?? status.reasonPhrase
        self.detail = detail
        self.errors = errors
        self.headers = headers
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var members: [(String, JSONDocument)] = [
            ("type", .string(type)), ("title", .string(title)), ("status", .integer(Int64(status.code))),
        ]
        if let detail { members.append(("detail", .string(detail))) }
        members.append(("instance", .string(request.uri.path)))
        if let errors {
            members.append((
                "errors",
                .array(errors.map { .object([("field", .string($0.field)), ("message", .string($0.message))]) })
            ))
        }
        return jsonResponse(.object(members), status: status, headers: headers, contentType: "application/problem+json")
    }
}

extension Problem {
    public static func validation(_ errors: [FieldError]) -> Problem {
        Problem(
            status: .badRequest, type: "/problems/validation", title: "The request is invalid",
            detail: errors.count == 1 ? "1 field is invalid." : "\(errors.count) fields are invalid.", errors: errors)
    }

    /// The request matches the contract (openapi.yaml), field by field, but breaks a rule
    /// that spans fields or depends on data: two questions in one language, a period that
    /// ends before it starts. 400 is kept for what the contract itself rules out.
    public static func ruleViolation(_ errors: [FieldError]) -> Problem {
        Problem(
            status: .unprocessableContent, type: "/problems/rule-violation", title: "The request breaks a rule",
            detail: errors.count == 1 ? "1 rule is broken." : "\(errors.count) rules are broken.", errors: errors)
    }

    public static func invalidField(_ field: String, _ message: String) -> Problem {
        validation([FieldError(field: field, message: message)])
    }

    public static func malformedJSON(_ detail: String) -> Problem {
        Problem(status: .badRequest, type: "/problems/malformed-json", title: "The body is not valid JSON", detail: detail)
    }

    /// One answer for a missing, malformed, unknown or revoked token: no oracle.
    public static let unauthorized = Problem(
        status: .unauthorized, title: "Unauthorized",
        detail: "A valid bearer token is required: Authorization: Bearer <token>.",
        headers: [.wwwAuthenticate: "Bearer realm=\"surveyd\""])

    /// A body over the route's limit, named in KiB.
    public static func bodyTooLarge(limit: Int) -> Problem {
        Problem(status: .contentTooLarge, detail: "The body is larger than \(limit / 1024) KiB.")
    }

    /// A `read` token asked to change something.
    public static let insufficientScope = Problem(
        status: .forbidden, type: "/problems/insufficient-scope", title: "Insufficient scope",
        detail: "This token may only read; creating, deleting and sending need a token of scope write.")

    /// The token's request rate is over its limit.
    /// `Accept` names no format the resource comes in.
    public static func notAcceptable(_ detail: String) -> Problem {
        Problem(status: .notAcceptable, type: "/problems/not-acceptable", title: "Not Acceptable", detail: detail)
    }

    public static let adminScopeRequired = Problem(
        status: .forbidden, type: "/problems/insufficient-scope", title: "Insufficient scope",
        detail: "Managing the company's tokens and settings needs a token of scope admin; the operator issues the first one.")

    public static func rateLimited(retryAfter: Duration) -> Problem {
        let seconds = retryAfterSeconds(retryAfter)
        return Problem(
            status: .tooManyRequests, type: "/problems/rate-limited", title: "Too many requests",
            detail: "This token is over its request rate limit; retry in \(seconds) s.",
            headers: [.retryAfter: String(seconds)])
    }

    /// The company's request rate, all its tokens together, is over its limit.
    public static func companyRateLimited(retryAfter: Duration) -> Problem {
        let seconds = retryAfterSeconds(retryAfter)
        return Problem(
            status: .tooManyRequests, type: "/problems/rate-limited", title: "Too many requests",
            detail: "This company is over its request rate limit (all its tokens together); retry in \(seconds) s.",
            headers: [.retryAfter: String(seconds)])
    }

    /// Too many failed authentications from the client's address.
    public static func tooManyFailedAuthentications(retryAfter: Duration) -> Problem {
        let seconds = retryAfterSeconds(retryAfter)
        return Problem(
            status: .tooManyRequests, type: "/problems/too-many-failed-authentications",
            title: "Too many failed authentications",
            detail: "Too many requests from this address had no valid token; retry in \(seconds) s.",
            headers: [.retryAfter: String(seconds)])
    }

    /// A send call would take the company past one of its daily caps; nothing was queued.
    public static func dailyCapExceeded(
        _ channel: Channel, requested: Int, cap: Int, queuedToday: Int, retryAfter: Duration
    ) -> Problem {
        let (type, title, unit) =
            switch channel {
            case .sms: ("/problems/daily-sms-cap", "Daily SMS cap reached", "SMS")
            case .email: ("/problems/daily-email-cap", "Daily e-mail cap reached", "e-mails")
            case .voice: ("/problems/daily-voice-cap", "Daily call cap reached", "calls")
            }
        return Problem(
            status: .tooManyRequests, type: type, title: title,
            detail: "This call would queue \(requested) \(unit); \(queuedToday) of today's \(cap) are already queued (UTC day). Nothing was queued.",
            headers: [.retryAfter: String(retryAfterSeconds(retryAfter))])
    }

    /// Whole seconds, rounded up and at least 1: `Retry-After` takes an integer.
    static func retryAfterSeconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return max(1, seconds + (attoseconds > 0 ? 1 : 0))
    }

    public static func notFound(_ detail: String = "No such resource.") -> Problem {
        Problem(status: .notFound, detail: detail)
    }

    public static func conflict(_ detail: String, errors: [FieldError]? = nil) -> Problem {
        Problem(status: .conflict, type: "/problems/conflict", title: "Conflict", detail: detail, errors: errors)
    }

    public static let unavailable = Problem(
        status: .serviceUnavailable, title: "Service Unavailable",
        detail: "The database is unavailable; retry shortly.", headers: [.retryAfter: "1"])

    /// The statement ran into its `statement_timeout`: the request's deadline, or the
    /// session's limit (e.g. a day trend of a very large company far from UTC).
    public static let tooSlow = Problem(
        status: .serviceUnavailable, type: "/problems/timeout", title: "Service Unavailable",
        detail: "The request took longer than the server allows and was stopped; retry later, or ask for less (a shorter period, a coarser interval).",
        headers: [.retryAfter: "5"])

    public static let internalError = Problem(
        status: .internalServerError, title: "Internal Server Error",
        detail: "Something went wrong on our side; it has been logged.")
}

