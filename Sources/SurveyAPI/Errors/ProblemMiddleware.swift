import Foundation
import Hummingbird
import Logging
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
            return try await next(request, context)
        } catch {
            return try problem(for: error, request: request, context: context).response(from: request, context: context)
        }
    }

    private func problem(for error: any Error, request: Request, context: Context) -> Problem {
        switch error {
        case let problem as Problem:
            return problem
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
        case StorageError.dailySMSCapExceeded(let allowance, let requested):
            return .dailySMSCapExceeded(
                requested: requested, cap: allowance.cap, queuedToday: allowance.queuedToday,
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

/// The daily SMS cap counts per UTC day.
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
