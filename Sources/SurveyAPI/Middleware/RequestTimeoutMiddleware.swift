import Hummingbird
import Logging

/// Ends a request that runs past `timeout` with 503 and `Retry-After`, cancelling its
/// handler (whose queries are then cancelled on the server too), so that no client waits
/// without end and no handler holds a connection past its time.
struct RequestTimeoutMiddleware<Context: RequestContext>: RouterMiddleware {
    let timeout: Duration

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        try await withoutActuallyEscaping(next) { next in
            let handler = NextHandler(run: next)
            return try await withThrowingTaskGroup(of: Response?.self) { group in
                group.addTask { try await handler.run(request, context) }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                defer { group.cancelAll() }
                guard let response = try await group.next()! else {
                    context.logger.warning("request timed out", metadata: ["timeout": "\(timeout)"])
                    throw Problem.timedOut(after: timeout)
                }
                return response
            }
        }
    }
}

/// `next` runs in a child task, the only place it runs; the task group is awaited to the
/// end before `handle` returns, so it never outlives the call and nothing else calls it
/// concurrently. That is what makes sending this non-`Sendable` closure safe.
private struct NextHandler<Context: RequestContext>: @unchecked Sendable {
    let run: (Request, Context) async throws -> Response
}
