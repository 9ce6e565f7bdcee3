import Foundation
import HTTPTypes
import Hummingbird
import Logging
import SurveyStorage

/// Every dashboard response: the security headers, and errors as HTML pages rather than
/// problem+json (a person reads them). A page needing a session that has none goes to
/// the sign-in page (303), not to an error.
struct DashboardMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    let resources: DashboardResources

    /// No script but our own files, no inline style, no framing, forms only to us.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let redirect as DashboardRedirect {
            response = Response(status: .seeOther, headers: [.location: redirect.location])
            for cookie in redirect.cookies { response.headers.append(HTTPField(name: .setCookie, value: cookie)) }
        } catch {
            response = errorPage(error, request: request, context: context)
        }
        response.headers[.contentSecurityPolicy] = Self.contentSecurityPolicy
        response.headers[.xFrameOptions] = "DENY"
        response.headers[.referrerPolicy] = "same-origin"
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.crossOriginOpenerPolicy] = "same-origin"
        response.headers[.permissionsPolicy] = "camera=(), microphone=(), geolocation=(), interest-cohort=()"
        return response
    }

    private func errorPage(_ error: any Error, request: Request, context: Context) -> Response {
        let problem: Problem
        switch error {
        case let known as Problem: problem = known
        case let http as HTTPError where http.status == .notFound: problem = .notFound("There is no such page.")
        case let http as HTTPError: problem = Problem(status: http.status, detail: http.body ?? http.status.reasonPhrase)
        case let failure where StorageFailure(failure) == .unavailable || failure is CancellationError:
            context.logger.warning("database unavailable", metadata: ["error": "\(String(reflecting: failure))"])
            problem = .unavailable
        case let failure where StorageFailure(failure) == .timedOut:
            problem = .tooSlow
        default:
            context.logger.error("unhandled error", metadata: ["error": "\(String(reflecting: error))"])
            problem = .internalError
        }
        let view = ErrorPage(
            layout: Layout(title: problem.title, resources: resources), status: Int(problem.status.code), title: problem.title,
            detail: problem.detail)
        var headers = problem.headers
        headers[.contentType] = "text/html; charset=utf-8"
        return Response(status: problem.status, headers: headers, body: .init(byteBuffer: .init(string: resources.render(view, template: "error"))))
    }
}

/// Thrown by a handler to send the browser elsewhere (303), optionally setting cookies.
struct DashboardRedirect: Error {
    var location: String
    var cookies: [String] = []

    static let signIn = DashboardRedirect(location: "/dashboard")
}

extension HTTPField.Name {
    static let contentSecurityPolicy = Self("Content-Security-Policy")!
    static let xFrameOptions = Self("X-Frame-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let crossOriginOpenerPolicy = Self("Cross-Origin-Opener-Policy")!
    static let permissionsPolicy = Self("Permissions-Policy")!
}
