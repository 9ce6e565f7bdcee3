import Foundation
import Hummingbird
import SurveyDomain
import SurveyStorage
import WebhookSender

/// `/webhooks`: a company's administrator (scope `admin`) registers the URLs its systems
/// are told at, sees each delivery and its attempts, tests an endpoint and replays a
/// delivery. A URL must be `https` to a host whose every address is public (checked here,
/// and again by the sender before each attempt).
struct WebhookEndpointController {
    let endpoints: WebhookEndpointRepository
    let deliveries: WebhookDeliveryRepository
    let settings: APIConfiguration.CompanyWebhooks

    /// `/test` and `/retry` hold their delivery this long: longer than an attempt can last.
    static let attemptLease: Duration = .seconds(60)

    func addRoutes(to routes: Routes<TenantRequestContext>) {
        routes.on(.get, "webhooks", use: list)
        routes.on(.post, "webhooks", use: create)
        routes.on(.get, "webhooks/:id", use: show)
        routes.on(.patch, "webhooks/:id", use: update)
        routes.on(.delete, "webhooks/:id", use: delete)
        routes.on(.post, "webhooks/:id/rotate-secret", use: rotateSecret)
        routes.on(.post, "webhooks/:id/test", use: test)
        routes.on(.get, "webhooks/:id/deliveries", use: listDeliveries)
        routes.on(.post, "webhooks/:id/deliveries/:deliveryId/retry", use: retry)
    }

    @Sendable func list(request: Request, context: TenantRequestContext) async throws -> JSONReply<[WebhookWire.Endpoint]> {
        try context.requireAdmin()
        return JSONReply(body: try await endpoints.list(company: context.company).map { WebhookWire.Endpoint(endpoint: $0) })
    }

    @Sendable func create(request: Request, context: TenantRequestContext) async throws -> JSONReply<WebhookWire.Endpoint> {
        try context.requireAdmin()
        let object = try await JSONValue.object(from: request, context: context)
        var validator = FieldValidator()
        validator.rejectUnknown(object, known: ["url", "events", "description"])
        let url = await checkURL(object["url"], required: true, &validator)
        let events = WebhookWire.events(object["events"], required: true, &validator)
        let description = WebhookWire.description(object["description"], &validator)
        try validator.check()
        let secret = WebhookSecret.generate()
        do {
            let endpoint = try await endpoints.create(
                url: url!, events: events!, description: description ?? nil, secret: secret, company: context.company)
            return JSONReply(status: .created, body: WebhookWire.Endpoint(endpoint: endpoint, secret: secret))
        } catch StorageError.tooManyWebhookEndpoints(let limit) {
            throw Problem.conflict("Your company has \(limit) webhook endpoints, the most it may have; delete one first.")
        }
    }

    @Sendable func show(request: Request, context: TenantRequestContext) async throws -> JSONReply<WebhookWire.Endpoint> {
        try context.requireAdmin()
        let id = try Self.endpointID(context)
        guard let endpoint = try await endpoints.find(id, company: context.company) else { throw Self.noEndpoint(id) }
        return JSONReply(body: WebhookWire.Endpoint(endpoint: endpoint))
    }

    /// A JSON merge patch of `url`, `events`, `description` and `enabled`.
    @Sendable func update(request: Request, context: TenantRequestContext) async throws -> JSONReply<WebhookWire.Endpoint> {
        try context.requireAdmin()
        let id = try Self.endpointID(context)
        let object = try await JSONValue.object(from: request, context: context)
        var validator = FieldValidator()
        validator.rejectUnknown(object, known: ["url", "events", "description", "enabled"])
        var change = WebhookEndpointChange()
        if object["url"] != nil { change.url = await checkURL(object["url"], required: true, &validator) }
        if object["events"] != nil { change.events = WebhookWire.events(object["events"], required: true, &validator) }
        change.description = WebhookWire.description(object["description"], &validator)
        switch object["enabled"] {
        case nil: break
        case .bool(let enabled)?: change.enabled = enabled
        case let other?: validator.fail("enabled", "must be a boolean, not \(other.kind)")
        }
        if object.isEmpty { validator.fail("body", "must set url, events, description or enabled") }
        try validator.check()
        do {
            return JSONReply(body: WebhookWire.Endpoint(endpoint: try await endpoints.update(id, change, company: context.company)))
        } catch StorageError.notFound {
            throw Self.noEndpoint(id)
        }
    }

    @Sendable func delete(request: Request, context: TenantRequestContext) async throws -> HTTPResponse.Status {
        try context.requireAdmin()
        let id = try Self.endpointID(context)
        do {
            try await endpoints.delete(id, company: context.company)
        } catch StorageError.notFound {
            throw Self.noEndpoint(id)
        }
        return .noContent
    }

    /// A new secret, shown once; the old one signs too for 24 hours.
    @Sendable func rotateSecret(request: Request, context: TenantRequestContext) async throws -> JSONReply<WebhookWire.Endpoint> {
        try context.requireAdmin()
        let id = try Self.endpointID(context)
        let secret = WebhookSecret.generate()
        do {
            let endpoint = try await endpoints.rotateSecret(id, to: secret, company: context.company)
            return JSONReply(body: WebhookWire.Endpoint(endpoint: endpoint, secret: secret))
        } catch StorageError.notFound {
            throw Self.noEndpoint(id)
        }
    }

    /// Sends a `ping` now (even to a disabled endpoint: that is how a company checks it
    /// before enabling it again) and answers with the attempt. Not retried.
    @Sendable func test(request: Request, context: TenantRequestContext) async throws -> JSONReply<WebhookWire.AttemptOutcome> {
        try context.requireAdmin()
        let id = try Self.endpointID(context)
        let claimed: WebhookDeliveryRepository.Claimed
        do {
            claimed = try await deliveries.ping(id, lease: Self.attemptLease, company: context.company)
        } catch StorageError.notFound {
            throw Self.noEndpoint(id)
        }
        return JSONReply(body: try await attempt(claimed, company: context.company))
    }

    /// Sends one delivery again now, with its `webhook-id`. A pending one that fails goes
    /// on with its schedule; one that had ended stays ended.
    @Sendable func retry(request: Request, context: TenantRequestContext) async throws -> JSONReply<WebhookWire.AttemptOutcome> {
        try context.requireAdmin()
        let id = try Self.endpointID(context)
        guard let delivery = WebhookDeliveryID(parsing: (context.parameters.get("deliveryId") ?? "")[...]) else {
            throw Problem.invalidField("deliveryId", "must be a delivery id (a positive integer)")
        }
        let claimed: WebhookDeliveryRepository.Claimed
        do {
            claimed = try await deliveries.claim(delivery, endpoint: id, lease: Self.attemptLease, company: context.company)
        } catch StorageError.notFound {
            throw Problem.notFound("No delivery \(delivery) of webhook endpoint \(id).")
        } catch StorageError.deliveryInProgress {
            throw Problem.conflict("An attempt of delivery \(delivery) is under way; its outcome will be in the delivery log.")
        }
        return JSONReply(body: try await attempt(claimed, company: context.company))
    }

    private func attempt(_ claimed: WebhookDeliveryRepository.Claimed, company: CompanyID) async throws -> WebhookWire.AttemptOutcome {
        let result = await settings.sender.send(
            WebhookMessage(id: claimed.messageID, body: Array(claimed.body.utf8), url: claimed.url, secrets: claimed.secrets,
                connectionKey: claimed.connectionKey))
        let attempt = WebhookDeliveryRepository.attempt(claimed, result: result, unit: Double.random(in: 0..<1))
        try await deliveries.record(attempt, company: company)
        return WebhookWire.AttemptOutcome(attempt: attempt)
    }

    @Sendable func listDeliveries(request: Request, context: TenantRequestContext) async throws -> Response {
        try context.requireAdmin()
        let id = try Self.endpointID(context)
        let parameters = request.uri.queryParameters
        var errors = QueryParameters.problems(parameters, known: ["status", "limit", "after"])
        var state: WebhookDeliveryState?
        if let text = parameters.get("status") {
            state = WebhookDeliveryState(rawValue: text)
            if state == nil {
                errors.append(.init(field: "status", message: "must be one of \(WebhookDeliveryState.allCases.map(\.rawValue).joined(separator: ", "))"))
            }
        }
        var limit = 50
        if let text = parameters.get("limit") {
            if let number = Int(text), (1...200).contains(number) { limit = number } else {
                errors.append(.init(field: "limit", message: "must be an integer from 1 to 200"))
            }
        }
        var after: WebhookDeliveryID?
        if let text = parameters.get("after") {
            after = WebhookDeliveryID(parsing: text[...])
            if after == nil { errors.append(.init(field: "after", message: "must be a delivery id (a positive integer)")) }
        }
        if !errors.isEmpty { throw Problem.validation(errors) }
        guard var page = try await deliveries.deliveries(
            endpoint: id, state: state, before: after, limit: limit + 1, company: context.company)
        else { throw Self.noEndpoint(id) }
        var headers: HTTPFields = [:]
        if page.count > limit {
            page.removeLast()
            var query = ["limit=\(limit)", "after=\(page.last!.id.rawValue)"]
            if let state { query.insert("status=\(state.rawValue)", at: 0) }
            headers[.link] = "<\(request.uri.path)?\(query.joined(separator: "&"))>; rel=\"next\""
        }
        var writer = JSONWriter()
        page.map(WebhookWire.Delivery.init).write(to: &writer)
        return jsonResponse(writer, status: .ok, headers: headers)
    }

    // MARK: Input

    static func endpointID(_ context: TenantRequestContext) throws -> WebhookEndpointID {
        guard let id = WebhookEndpointID(parsing: (context.parameters.get("id") ?? "")[...]) else {
            throw Problem.invalidField("id", "must be a webhook endpoint id (a positive integer)")
        }
        return id
    }

    static func noEndpoint(_ id: WebhookEndpointID) -> Problem { Problem.notFound("No webhook endpoint \(id).") }

    /// The URL in its canonical form, if it may be used: its form (`WebhookURL`), then,
    /// for a host name, every address it resolves to must be public.
    func checkURL(_ value: JSONValue?, required: Bool, _ validator: inout FieldValidator) async -> String? {
        guard let value, value != .null else {
            if required { validator.fail("url", "is required") }
            return nil
        }
        guard case .string(let text) = value else {
            validator.fail("url", "must be a string, not \(value.kind)")
            return nil
        }
        let url: WebhookURL
        switch WebhookURL.parse(text, allowPrivate: settings.allowPrivateAddresses) {
        case .success(let parsed): url = parsed
        case .failure(let error):
            validator.fail("url", error.message)
            return nil
        }
        guard case .name(let name) = url.host, !settings.allowPrivateAddresses else { return url.text }
        let addresses = (try? await settings.resolver.addresses(of: name)) ?? []
        guard !addresses.isEmpty else {
            validator.fail("url", "must have a host that resolves; \(name) has no address")
            return nil
        }
        guard addresses.allSatisfy(WebhookDestinationPolicy.isPublic) else {
            validator.fail("url", "\(WebhookURLError.privateAddress.message); \(name) resolves to one")
            return nil
        }
        return url.text
    }
}
