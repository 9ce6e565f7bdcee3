import Foundation
import HTTPTypes
import HummingbirdCore
import Hummingbird
import SurveyDomain
import SurveyStorage

/// `/requests`: what became of each survey request, one at a time, as a paginated list,
/// or as a whole period in CSV or newline-delimited JSON; and cancelling one before it
/// reaches the provider.
struct RequestController {
    let requests: RequestRepository
    /// The clock for the default period; tests pin it.
    var now: @Sendable () -> Date = { Date() }

    func addRoutes(to routes: Routes<TenantRequestContext>) {
        routes.on(.get, "requests", use: list)
        routes.on(.get, "requests/:id", use: get)
        routes.on(.delete, "requests/:id", use: cancel)
    }

    @Sendable func get(request: Request, context: TenantRequestContext) async throws -> Response {
        let id = try requestID(context)
        let unknown = QueryParameters.problems(request.uri.queryParameters, known: ["timezone"])
        if !unknown.isEmpty { throw Problem.validation(unknown) }
        let zone = try Self.zone(request.uri.queryParameters["timezone"])
        guard let record = try await requests.find(id, company: context.company) else {
            throw Problem.notFound("No request \(id).")
        }
        var writer = JSONWriter()
        RequestWire(record: record, zone: zone).write(to: &writer)
        return jsonResponse(writer, status: .ok)
    }

    @Sendable func cancel(request: Request, context: TenantRequestContext) async throws -> HTTPResponse.Status {
        let id = try requestID(context)
        do {
            try await requests.cancel(id, company: context.company)
            return .noContent
        } catch StorageError.notFound {
            throw Problem.notFound("No request \(id).")
        } catch let error as RequestNotCancellable {
            let stage =
                error.handingOver
                ? "is being handed to the provider"
                : error.callPlaced ? "has had a call placed already (another is due)" : "is \(error.status.rawValue)"
            throw Problem.conflict(
                "Request \(id) \(stage); only a scheduled or queued request that no worker has picked up can be cancelled.",
                errors: [.init(field: "status", message: error.status.rawValue)])
        }
    }

    @Sendable func list(request: Request, context: TenantRequestContext) async throws -> Response {
        let listing = try RequestListing(request: request, now: now())
        switch listing.format {
        case .json:
            // One more than asked tells whether a next page exists without a count.
            var page = try await requests.list(
                listing.filter, order: listing.order, after: listing.after, limit: listing.limit + 1, company: context.company)
            var headers: HTTPFields = [:]
            if page.count > listing.limit {
                page.removeLast()
                headers[.link] = "<\(listing.nextPage(after: page.last!.id, path: request.uri.path))>; rel=\"next\""
            }
            var writer = JSONWriter()
            writer.beginArray()
            for record in page {
                writer.element()
                RequestWire(record: record, zone: listing.zone).write(to: &writer)
            }
            writer.endArray()
            return jsonResponse(writer, status: .ok, headers: headers)
        case .csv, .ndjson:
            return try await export(listing, company: context.company)
        }
    }

    /// The whole period, streamed a chunk at a time: memory stays flat whatever its size.
    /// The next chunk is read while the current one is encoded and written, so the
    /// database and the encoding run side by side. The first chunk is read before the
    /// response starts, so a failure there is still a problem response; a failure later
    /// can only cut the body short (the connection is closed without the last chunk, which
    /// every HTTP client reports as an error).
    private func export(_ listing: RequestListing, company: CompanyID) async throws -> Response {
        let requests = self.requests
        let chunk = RequestRepository.exportChunk
        let first = try await requests.list(listing.filter, order: listing.order, after: listing.after, limit: chunk, company: company)
        var headers: HTTPFields = [:]
        headers[.contentType] = listing.format.contentType
        if listing.format == .csv {
            headers[.contentDisposition] = "attachment; filename=\"requests.csv\""
        }
        let body = ResponseBody { writer in
            var csv = CSVWriter()
            if listing.format == .csv {
                for field in RequestWire.fields { csv.cell(field) }
                csv.endRow()
            }
            func encode(_ records: [RequestRecord]) -> ByteBuffer {
                if listing.format == .csv {
                    for record in records { RequestWire(record: record, zone: listing.zone).csvRow(to: &csv) }
                    defer { csv.removeAll() }
                    return ByteBuffer(bytes: csv.bytes)
                }
                var json = JSONWriter()
                for record in records {
                    RequestWire(record: record, zone: listing.zone).write(to: &json)
                    json.lineBreak()
                }
                return ByteBuffer(bytes: json.bytes)
            }
            var current = first
            while true {
                // A full chunk may have a next one: read it meanwhile.
                let next = current.count == chunk ? current.last.map { last in
                    Task {
                        try await requests.list(listing.filter, order: listing.order, after: last.id, limit: chunk, company: company)
                    }
                } : nil
                do {
                    try await writer.write(encode(current))
                } catch {
                    next?.cancel()
                    throw error
                }
                guard let next else { break }
                current = try await next.value
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    private func requestID(_ context: TenantRequestContext) throws -> SurveyDomain.RequestID {
        guard let id = SurveyDomain.RequestID(parsing: (context.parameters.get("id") ?? "")[...]) else {
            throw Problem.invalidField("id", "must be a request id (a positive integer)")
        }
        return id
    }

    static func zone(_ name: Substring?) throws -> TimeZone {
        guard let name else { return TimeZone(identifier: "UTC")! }
        guard let zone = ReportTimeZones.zone(named: String(name)) else {
            throw Problem.invalidField("timezone", "must be an IANA time zone name such as Europe/Brussels or UTC")
        }
        return zone
    }
}

extension HTTPField.Name {
    static let contentDisposition = Self("Content-Disposition")!
}
