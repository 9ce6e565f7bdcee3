import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SMSGateway
import SurveyDomain
import SurveyStorage

/// `/dashboard`: a company's NPS in a browser, rendered on the server from the same
/// storage code as the API's reports (`DashboardPages`), so the figures cannot drift.
///
/// Sign-in exchanges a pasted API token for a session (`DashboardSessionRepository`): the
/// token is read from the form's body once and never written anywhere; the browser keeps
/// only the session's opaque cookie. Every request looks its session up in the database,
/// so a revoked token ends its sessions at once on every replica.
struct DashboardController {
    let resources: DashboardResources
    let sessions: DashboardSessionRepository
    let authenticator: TokenAuthenticator
    let limiter: SharedRateLimiter<ContinuousClock>
    let limits: APIConfiguration.Limits
    let failures: FailedAuthentications
    let companies: CompanyRepository
    let pages: DashboardPages
    /// The API's export, for the requests page's CSV link.
    let requestExport: RequestController

    static let maximumFormSize = 8 * 1024

    func addRoutes(to routes: Routes<AppRequestContext>) {
        routes.on(.get, "", use: home)
        routes.on(.post, "sign-in", use: signIn)
        routes.on(.post, "sign-out", use: signOut)
        routes.on(.get, "surveys/:id", use: survey)
        routes.on(.get, "requests", use: requests)
        routes.on(.get, "requests.csv", use: requestsCSV)
        routes.on(.get, "usage", use: usage)
        routes.on(.get, "assets/:name", use: asset)
        // Anything else under /dashboard is a page that does not exist, answered as a
        // page (with the dashboard's headers), not as the API's problem+json.
        routes.on(.get, "**", use: missing)
    }

    @Sendable func missing(request: Request, context: AppRequestContext) async throws -> Response {
        throw Problem.notFound("There is no such page.")
    }

    // MARK: Pages

    /// The overview when signed in, else the sign-in form.
    @Sendable func home(request: Request, context: AppRequestContext) async throws -> Response {
        guard let signedIn = try await session(request) else { return signInPage(request, status: .ok) }
        try await charge(signedIn)
        return html(try await pages.overview(request, signedIn: signedIn))
    }

    @Sendable func survey(request: Request, context: AppRequestContext) async throws -> Response {
        let signedIn = try await requireSession(request)
        try await charge(signedIn)
        guard let id = SurveyID(parsing: (context.parameters.get("id") ?? "")[...]) else {
            throw Problem.notFound("There is no such survey.")
        }
        return html(try await pages.survey(id, request, signedIn: signedIn))
    }

    @Sendable func requests(request: Request, context: AppRequestContext) async throws -> Response {
        let signedIn = try await requireSession(request)
        try await charge(signedIn)
        return html(try await pages.requests(request, signedIn: signedIn))
    }

    /// The requests page's export: the API's own (`GET /requests?format=csv`), with the
    /// same parameters and rules, behind the session instead of a bearer token. Never a
    /// phone number: the export has none to give.
    @Sendable func requestsCSV(request: Request, context: AppRequestContext) async throws -> Response {
        let signedIn = try await requireSession(request)
        try await charge(signedIn)
        var tenant = context
        tenant.company = signedIn.session.company
        tenant.scope = signedIn.session.scope
        return try await requestExport.list(request: request, context: try TenantRequestContext(context: tenant))
    }

    @Sendable func usage(request: Request, context: AppRequestContext) async throws -> Response {
        let signedIn = try await requireSession(request)
        try await charge(signedIn)
        return html(try await pages.usage(request, signedIn: signedIn))
    }

    @Sendable func asset(request: Request, context: AppRequestContext) async throws -> Response {
        guard let name = context.parameters.get("name"), let asset = resources.assets[name] else {
            throw Problem.notFound("There is no such file.")
        }
        return Response(
            status: .ok,
            headers: [.contentType: asset.contentType, .cacheControl: "public, max-age=31536000, immutable"],
            body: .init(byteBuffer: ByteBuffer(bytes: asset.bytes)))
    }

    // MARK: Signing in and out

    @Sendable func signIn(request: Request, context: AppRequestContext) async throws -> Response {
        let form = try await formFields(request)
        guard let nonce = DashboardCookies.value(DashboardCookies.signIn, in: request), let presented = form["csrf"],
            constantTimeEquals(String(nonce), presented)
        else {
            return signInPage(request, status: .forbidden, error: "This sign-in form had expired. Paste your token again.")
        }
        let token = APIToken(secret: (form["token"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines))
        guard let identity = try await authenticator.identity(of: token) else {
            let problem = await failures.refusal(request, context)
            let message =
                problem.status == .tooManyRequests
                ? "Too many failed sign-ins from this address. Wait a little and try again."
                : "That token is not valid: it may have been mistyped or revoked."
            var response = signInPage(request, status: problem.status, error: message)
            if let retry = problem.headers[.retryAfter] { response.headers[.retryAfter] = retry }
            return response
        }
        let secret = DashboardSessionSecret.generate()
        _ = try await sessions.open(secret, token: identity)
        context.logger.info("dashboard session opened", metadata: ["company_id": "\(identity.company)", "token_id": "\(identity.token)"])
        throw DashboardRedirect(
            location: "/dashboard",
            cookies: [
                DashboardCookies.set(DashboardCookies.session, secret.value, request: request),
                DashboardCookies.clear(DashboardCookies.signIn, request: request),
            ])
    }

    @Sendable func signOut(request: Request, context: AppRequestContext) async throws -> Response {
        let form = try await formFields(request)
        let signedIn = try await requireSession(request)
        guard let presented = form["csrf"], signedIn.secret.isValidCSRFToken(presented) else {
            throw Problem(status: .forbidden, title: "Forbidden", detail: "This form had expired. Go back, reload the page and try again.")
        }
        try await sessions.close(signedIn.session)
        throw DashboardRedirect(
            location: "/dashboard", cookies: [DashboardCookies.clear(DashboardCookies.session, request: request)])
    }

    // MARK: Sessions

    /// Who is signed in, if anyone: a well-formed cookie whose session is live and whose
    /// token is not revoked.
    func session(_ request: Request) async throws -> SignedIn? {
        guard let cookie = DashboardCookies.value(DashboardCookies.session, in: request),
            let secret = DashboardSessionSecret(cookie: cookie),
            let session = try await sessions.find(secret),
            let company = try await companies.find(session.company)
        else { return nil }
        return SignedIn(session: session, secret: secret, company: company)
    }

    /// The session, or off to the sign-in page (a stale cookie is dropped on the way).
    func requireSession(_ request: Request) async throws -> SignedIn {
        if let signedIn = try await session(request) { return signedIn }
        var redirect = DashboardRedirect.signIn
        if DashboardCookies.value(DashboardCookies.session, in: request) != nil {
            redirect.cookies.append(DashboardCookies.clear(DashboardCookies.session, request: request))
        }
        throw redirect
    }

    /// A page counts against its token's rate limit and its company's, as an API call does.
    func charge(_ signedIn: SignedIn) async throws {
        if case .limited(let wait) = await limiter.acquire("token:\(signedIn.session.token)", limit: limits.perToken) {
            throw Problem.rateLimited(retryAfter: wait)
        }
        let companyLimit = signedIn.company.settings.requestRateLimit ?? limits.perCompany
        if case .limited(let wait) = await limiter.acquire("company:\(signedIn.session.company)", limit: companyLimit) {
            throw Problem.companyRateLimited(retryAfter: wait)
        }
    }

    // MARK: Pieces

    private func signInPage(_ request: Request, status: HTTPResponse.Status, error: String? = nil) -> Response {
        // One value per browser while it signs in (several tabs share it).
        let existing = DashboardCookies.value(DashboardCookies.signIn, in: request).flatMap { DashboardSessionSecret(cookie: $0) }
        let nonce = existing?.value ?? randomBase64URL(bytes: 32)
        let view = SignInPage(layout: Layout(title: "Sign in", resources: resources), csrf: nonce, error: error)
        var response = html(resources.render(view, template: "sign-in"), status: status)
        response.headers.append(HTTPField(name: .setCookie, value: DashboardCookies.set(DashboardCookies.signIn, nonce, request: request)))
        if DashboardCookies.value(DashboardCookies.session, in: request) != nil {
            response.headers.append(HTTPField(name: .setCookie, value: DashboardCookies.clear(DashboardCookies.session, request: request)))
        }
        return response
    }

    /// The fields of a posted form (`application/x-www-form-urlencoded`, at most 8 KiB).
    private func formFields(_ request: Request) async throws -> [String: String] {
        let type = request.headers[.contentType]?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
        guard type == "application/x-www-form-urlencoded" else {
            throw Problem(status: .unsupportedMediaType, title: "Unsupported Media Type", detail: "Send this form from the dashboard's page.")
        }
        let body = try await request.body.collect(upTo: Self.maximumFormSize)
        guard let pairs = FormURLEncoding.decode(String(buffer: body)) else {
            throw Problem(status: .badRequest, title: "Bad Request", detail: "The form could not be read.")
        }
        var fields: [String: String] = [:]
        for (name, value) in pairs { fields[name] = value }
        return fields
    }

    private func html(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

/// A browser with a live session: who it is, and the secret its forms are signed with.
struct SignedIn: Sendable {
    var session: DashboardSessionRepository.Session
    var secret: DashboardSessionSecret
    var company: Company
}
