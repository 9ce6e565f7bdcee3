import Foundation
import HTTPTypes
import Hummingbird
import Metrics
import SMSGateway
import SurveyDomain
import SurveyStorage

/// The links of an e-mailed survey, outside the bearer-token API (the token in the path is
/// the credential):
///
/// - `GET /r/{token}/{score}`: the landing page, the score preselected. Mail scanners
///   (Outlook Safe Links and the like) fetch every link in a message, so a GET records
///   nothing;
/// - `POST /r/{token}` (`score=N`): records the score (a later choice within the window
///   replaces it) and thanks the customer;
/// - `GET /u/{token}`: asks to confirm; `POST /u/{token}`: unsubscribes, as mail clients do
///   for `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
struct ResponseLinkController {
    typealias Context = AppRequestContext

    let links: ResponseLinkRepository

    /// A form of one field: anything larger is not ours.
    static var maximumFormSize: Int { 4 * 1024 }

    /// Nothing but the page itself and its inline style; forms only to us; never framed.
    static let contentSecurityPolicy =
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    func addRoutes(to routes: Routes<Context>) {
        routes.on(.get, "r/:token/:score", use: landing)
        routes.on(.post, "r/:token", use: record)
        routes.on(.get, "u/:token", use: confirmUnsubscribe)
        routes.on(.post, "u/:token", use: unsubscribe)
    }

    @Sendable func landing(request: Request, context: Context) async throws -> Response {
        guard let token = Self.token(context), let score = Self.score(context.parameters.get("score")),
            let linked = try await links.find(token)
        else { return Self.page(ResponsePage.unknown, status: .notFound) }
        guard linked.isOpen else { return Self.page(ResponsePage.closed(linked), status: .gone) }
        return Self.page(ResponsePage.choose(linked, token: token, chosen: score))
    }

    @Sendable func record(request: Request, context: Context) async throws -> Response {
        guard let token = Self.token(context) else { return Self.page(ResponsePage.unknown, status: .notFound) }
        let fields = try await Self.form(request)
        guard let score = Self.score(fields?["score"]) else {
            // A form that is not ours (or no choice made): the page again, asking for one.
            guard let linked = try await links.find(token) else { return Self.page(ResponsePage.unknown, status: .notFound) }
            return Self.page(ResponsePage.choose(linked, token: token, chosen: nil), status: .badRequest)
        }
        switch try await links.record(score, for: token) {
        case .recorded(let linked, let previous):
            Counter(label: "email_responses_total", dimensions: [("outcome", previous == nil ? "scored" : "replaced")]).increment()
            return Self.page(ResponsePage.thanks(linked, score: score, token: token))
        case .closed(let linked):
            Counter(label: "email_responses_total", dimensions: [("outcome", "closed")]).increment()
            return Self.page(ResponsePage.closed(linked), status: .gone)
        case .unknown:
            return Self.page(ResponsePage.unknown, status: .notFound)
        }
    }

    @Sendable func confirmUnsubscribe(request: Request, context: Context) async throws -> Response {
        guard let token = Self.token(context), let linked = try await links.find(token) else {
            return Self.page(ResponsePage.unknown, status: .notFound)
        }
        return Self.page(ResponsePage.unsubscribe(token: token, language: linked.language))
    }

    /// Whatever the body (RFC 8058 says `List-Unsubscribe=One-Click`, as a form or multipart;
    /// our own page posts an empty form): the POST itself is the request, and scanners do not
    /// POST. The body is still read, within its bound.
    @Sendable func unsubscribe(request: Request, context: Context) async throws -> Response {
        _ = try await request.collectBody(upTo: Self.maximumFormSize)
        guard let token = Self.token(context), let done = try await links.unsubscribe(token) else {
            return Self.page(ResponsePage.unknown, status: .notFound)
        }
        Counter(label: "email_unsubscribes_total").increment()
        return Self.page(ResponsePage.unsubscribed(language: done.language))
    }

    // MARK: Reading and writing

    /// A token of our shape; anything else costs no lookup.
    static func token(_ context: Context) -> ResponseLinkToken? {
        context.parameters.get("token").flatMap { ResponseLinkToken(presented: $0) }
    }

    /// `0` to `10`, written plainly.
    static func score(_ text: String?) -> Int? {
        guard let text, (1...2).contains(text.utf8.count), text.utf8.allSatisfy({ (48...57).contains($0) }),
            let value = Int(text), (0...10).contains(value)
        else { return nil }
        return value
    }

    /// A posted `application/x-www-form-urlencoded` form, or `nil` for another body.
    static func form(_ request: Request) async throws -> [String: String]? {
        let body = try await request.collectBody(upTo: maximumFormSize)
        let type = request.headers[.contentType]?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
        guard type == "application/x-www-form-urlencoded", let pairs = FormURLEncoding.decode(String(buffer: body)) else { return nil }
        return Dictionary(pairs, uniquingKeysWith: { first, _ in first })
    }

    static func page(_ html: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status,
            headers: [
                .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
                .contentSecurityPolicy: contentSecurityPolicy, .referrerPolicy: "no-referrer",
                .xContentTypeOptions: "nosniff", .xFrameOptions: "DENY", .xRobotsTag: "noindex, nofollow",
            ],
            body: .init(byteBuffer: ByteBuffer(string: html)))
    }
}

extension HTTPField.Name {
    static let xRobotsTag = Self("X-Robots-Tag")!
}
