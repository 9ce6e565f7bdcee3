import Foundation
import Hummingbird
import Logging
import Metrics
import NIOHTTP1
import SurveyDomain
import SurveyStorage
import Synchronization

/// The outermost middleware: whatever a handler throws becomes a problem+json response,
/// a route that exists with another method becomes 405 with `Allow`, and anything
/// unexpected is logged in full and answered 500 without detail.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    let routes: RouteTable

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            try Self.checkTransferEncoding(request)
            return try await next(request, context)
        } catch {
            let problem = problem(for: error, request: request, context: context)
            if problem.status.code >= 500 { countServerError(problem.status, request: request, context: context) }
            return try problem.response(from: request, context: context)
        }
    }

    /// Hummingbird's `MetricsMiddleware` counts errors it sees thrown; this middleware turns
    /// them into responses inside it, so server errors are counted here, under the same
    /// name and dimensions (`http_server_request_errors_total`). Client errors are not errors
    /// of the server.
    private func countServerError(_ status: HTTPResponse.Status, request: Request, context: Context) {
        Counter(
            label: "hb.request.errors",
            dimensions: [
                ("http.route", context.endpointPath ?? "NotFound"), ("http.request.method", request.method.rawValue),
                ("error.type", String(status.code)),
            ]
        ).increment()
    }

    /// Only `chunked` is a transfer coding HTTP/1.1 servers must understand; NIO's parser
    /// fails on the body of any other (`gzip`, `xchunked`), which used to surface as a 500.
    /// Refused up front with a 400 that says what to send instead.
    static func checkTransferEncoding(_ request: Request) throws {
        guard let value = request.headers[.transferEncoding] else { return }
        let codings = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        guard codings == ["chunked"] else {
            throw Problem(
                status: .badRequest, title: "Unsupported transfer coding",
                detail: "Transfer-Encoding \(codings.joined(separator: ", ")) is not supported: send the body with Content-Length or Transfer-Encoding: chunked.")
        }
    }

    private func problem(for error: any Error, request: Request, context: Context) -> Problem {
        switch error {
        case let problem as Problem:
            return problem
        case let error as HTTPParserError:
            // The request's framing broke while its body was read: the client's doing.
            return Problem(status: .badRequest, title: "Malformed request", detail: "The request could not be parsed (\(error)).")
        case let error as HTTPError:
            if error.status == .notFound, let allowed = routes.allowedMethods(forPath: request.uri.path) {
                return Problem(
                    status: .methodNotAllowed,
                    detail: "\(request.method) is not allowed here; allowed: \(allowed.joined(separator: ", ")).",
                    headers: [.allow: allowed.joined(separator: ", ")])
            }
            if error.status == .contentTooLarge {
                return .bodyTooLarge(limit: maximumBodySize)
            }
            if error.status == .notFound, error.body == nil {
                return .notFound("No route for \(request.method) \(request.uri.path).")
            }
            return Problem(status: error.status, detail: error.body ?? error.status.reasonPhrase + ".")
        case let error as any HTTPResponseError:
            // Hummingbird's own client errors, e.g. a body over the size limit.
            if error.status == .contentTooLarge {
                return .bodyTooLarge(limit: maximumBodySize)
            }
            return Problem(status: error.status, detail: error.status.reasonPhrase + ".")
        case StorageError.notFound:
            return .notFound()
        case StorageError.dailyCapExceeded(let channel, let allowance, let requested):
            return .dailyCapExceeded(
                channel, requested: requested, cap: allowance.cap, queuedToday: allowance.queuedToday,
                retryAfter: untilNextUTCMidnight())
        case let error where StorageFailure(error) == .unavailable:
            context.logger.warning("database unavailable", metadata: ["error": "\(String(reflecting: error))"])
            return .unavailable
        case let error where StorageFailure(error) == .timedOut:
            context.logger.warning("statement timed out", metadata: ["error": "\(String(reflecting: error))"])
            return .tooSlow
        case is CancellationError:
            return .unavailable
        default:
            context.logger.error("unhandled error", metadata: ["error": "\(String(reflecting: error))"])
            return .internalError
        }
    }
}

/// The daily caps count per UTC day.
private func untilNextUTCMidnight(now: Date = Date()) -> Duration {
    let seconds = now.timeIntervalSince1970
    let next = (seconds / 86_400).rounded(.down) * 86_400 + 86_400
    return .milliseconds(Int64(((next - seconds) * 1000).rounded(.up)))
}

/// The largest request body accepted (413 beyond).
let maximumBodySize = 1024 * 1024

/// The routes and methods the application serves, so that a known path with an unknown
/// method is answered 405 with `Allow` rather than 404. Filled while routes are registered
/// (through `Routes`), read while serving.
final class RouteTable: Sendable {
    private let routes = Mutex<[(segments: [Substring], method: String)]>([])

    func add(path: String, method: HTTPRequest.Method) {
        routes.withLock { $0.append((path.split(separator: "/"), method.rawValue)) }
    }

    /// The methods allowed on `path`, or `nil` when no route matches it at all.
    func allowedMethods(forPath path: String) -> [String]? {
        let segments = path.split(separator: "/")
        let methods = routes.withLock { routes in
            routes.filter { route in
                route.segments.count == segments.count
                    && zip(route.segments, segments).allSatisfy { $0.hasPrefix(":") || $0 == $1 }
            }.map(\.method)
        }
        return methods.isEmpty ? nil : Array(Set(methods)).sorted()
    }
}

/// Registers a controller's routes on a router group and in the `RouteTable` at once.
struct Routes<Context: RequestContext> {
    let group: RouterGroup<Context>
    let prefix: String
    let table: RouteTable

    func on<Output: ResponseGenerator>(
        _ method: HTTPRequest.Method, _ path: String,
        use handler: @escaping @Sendable (Request, Context) async throws -> Output
    ) {
        group.on(RouterPath(path), method: method, use: handler)
        table.add(path: prefix + "/" + path, method: method)
    }
}
