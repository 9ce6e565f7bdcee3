import Hummingbird
import SurveyStorage

/// Gives each request a deadline, `timeout` from its start. The database work of the
/// request runs with what is left as its `statement_timeout` (and a request whose
/// statement runs past it is answered 503 with `Retry-After`, the statement cancelled by
/// the server). A deadline rather than a watchdog task per request: a task group for
/// every request cost a third of the server's throughput and most of its memory under
/// load (docs/BENCHMARKS.md). Slow clients are the idle timeout's business.
struct RequestTimeoutMiddleware<Context: RequestContext>: RouterMiddleware {
    let timeout: Duration

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        try await RequestDeadline.$current.withValue(.now + timeout) {
            try await next(request, context)
        }
    }
}
