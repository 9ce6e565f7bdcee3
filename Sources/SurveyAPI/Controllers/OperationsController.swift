import Hummingbird
import Logging
import NIOCore
import SurveyStorage

/// What the operator's tooling calls, without a token: liveness, readiness, metrics and
/// the API's contract.
struct OperationsController<Context: RequestContext> {
    let database: Database
    let operations: APIConfiguration.Operations

    func addRoutes(to routes: Routes<Context>) {
        routes.on(.get, "health", use: health)
        if operations.migrator != nil { routes.on(.get, "ready", use: ready) }
        if operations.metrics != nil { routes.on(.get, "metrics", use: metrics) }
        if operations.openAPI != nil {
            routes.on(.get, "openapi.yaml", use: openAPIYAML)
            routes.on(.get, "openapi.json", use: openAPIJSON)
        }
    }

    /// The process is up and serving HTTP; nothing else is checked, so a database outage
    /// does not get healthy replicas restarted.
    @Sendable func health(request: Request, context: Context) async throws -> Response {
        jsonResponse(.object([("status", .string("ok"))]), status: .ok, headers: [.cacheControl: "no-store"])
    }

    /// Whether to send this replica traffic: the database answers and is migrated.
    @Sendable func ready(request: Request, context: Context) async throws -> Response {
        let readiness = await database.readiness(migrator: operations.migrator!, timeout: operations.readinessTimeout)
        guard readiness.isReady else {
            let reason =
                readiness.databaseReachable
                ? "The database schema is behind this build: run `surveyd migrate`."
                : "The database is unreachable."
            context.logger.warning("not ready", metadata: ["reason": "\(reason)"])
            throw Problem(
                status: .serviceUnavailable, title: "Not ready", detail: reason,
                headers: [.retryAfter: "5", .cacheControl: "no-store"])
        }
        return jsonResponse(.object([("status", .string("ready"))]), status: .ok, headers: [.cacheControl: "no-store"])
    }

    @Sendable func metrics(request: Request, context: Context) async throws -> Response {
        Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(bytes: operations.metrics!())))
    }

    @Sendable func openAPIYAML(request: Request, context: Context) async throws -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/yaml; charset=utf-8", .cacheControl: "public, max-age=300"],
            body: .init(byteBuffer: ByteBuffer(string: operations.openAPI!.yaml)))
    }

    @Sendable func openAPIJSON(request: Request, context: Context) async throws -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/json; charset=utf-8", .cacheControl: "public, max-age=300"],
            body: .init(byteBuffer: ByteBuffer(string: operations.openAPI!.json)))
    }
}
