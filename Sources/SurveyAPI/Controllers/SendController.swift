import Foundation
import HTTPTypes
import Hummingbird
import SurveyDomain
import SurveyStorage

/// `POST /surveys/{id}/send`: validates the whole call, then queues what the rules allow.
struct SendController {
    let sends: SendRepository
    let idempotency: IdempotencyRepository
    let hasher: DestinationHasher
    /// The clock `sendAt` is checked against; tests pin it.
    var now: @Sendable () -> Date = { Date() }

    func addRoutes(to routes: Routes<TenantRequestContext>) {
        routes.on(.post, "surveys/:id/send", use: send)
    }

    @Sendable func send(request: Request, context: TenantRequestContext) async throws -> Response {
        guard let surveyID = SurveyID(parsing: (context.parameters.get("id") ?? "")[...]) else {
            throw Problem.invalidField("id", "must be a survey id (a positive integer)")
        }
        let key = try idempotencyKey(request)
        let body = try await request.body.collect(upTo: context.maxUploadSize)
        let object = try JSONValue.object(from: body, request: request)
        let drafts = try SendController.drafts(from: object, now: now())
        let items = drafts.map { SendRepository.Item(draft: $0, destinationHash: hasher.hash($0.destination)) }

        guard let key else {
            let results = try await sends.enqueue(items, survey: surveyID, company: context.company)
            return Self.accepted(results, drafts: drafts)
        }
        // The fingerprint covers the survey and the exact body: same key, same call. Keyed,
        // because the body holds phone numbers.
        var call = Data("\(surveyID)\n".utf8)
        call.append(contentsOf: body.readableBytesView)
        let fingerprint = hasher.fingerprint(call)
        let idempotency = self.idempotency
        let company = context.company
        do {
            // The claim, the work and the stored response in one transaction.
            let results = try await sends.enqueue(
                items, survey: surveyID, company: company,
                first: { connection in
                    let claim = try await idempotency.claim(key, requestHash: fingerprint, company: company, on: connection)
                    if claim != .proceed { throw AlreadyClaimed(claim: claim) }
                },
                record: { results, connection in
                    try await idempotency.store(
                        key, status: 202, body: Self.resultsJSON(results, drafts: drafts).serialized(), company: company,
                        on: connection)
                })
            return Self.accepted(results, drafts: drafts)
        } catch let claimed as AlreadyClaimed {
            switch claimed.claim {
            case .replay(let status, let stored):
                var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
                headers[.idempotentReplayed] = "true"
                return Response(
                    status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(string: stored)))
            case .mismatch:
                throw Problem(
                    status: .unprocessableContent, type: "/problems/idempotency-key-reused", title: "Idempotency-Key reused",
                    detail: "This Idempotency-Key was used with a different request in the last 24 hours.")
            case .inProgress, .proceed:
                throw Problem.conflict("A request with this Idempotency-Key is still being processed; retry shortly.")
            }
        }
    }

    /// Ends the send's transaction when its key was used before: nothing is done, and the
    /// earlier answer (or the reason there is none) is given instead.
    private struct AlreadyClaimed: Error {
        let claim: IdempotencyRepository.Claim
    }

    private func idempotencyKey(_ request: Request) throws -> String? {
        guard let key = request.headers[.idempotencyKey] else { return nil }
        guard SendLimits.idempotencyKeyLength.contains(key.unicodeScalars.count),
            key.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value < 0x7F })
        else {
            throw Problem.invalidField("Idempotency-Key", "must be 1 to 255 printable ASCII characters")
        }
        return key
    }

    static func accepted(_ results: [SendResult], drafts: [SurveyRequestDraft]) -> Response {
        jsonResponse(resultsJSON(results, drafts: drafts), status: .accepted)
    }

    /// `{"results": [...]}` in input order, each with the item's `referenceId`.
    static func resultsJSON(_ results: [SendResult], drafts: [SurveyRequestDraft]) -> JSONDocument {
        .object([
            (
                "results",
                .array(
                    zip(results, drafts).map { result, draft in
                        let reference: JSONDocument = draft.referenceID.map { .string($0) } ?? .null
                        switch result {
                        case .queued(let id):
                            return .object([("referenceId", reference), ("requestId", .integer(id.rawValue)), ("status", .string("queued"))])
                        case .scheduled(let id, let time):
                            return .object([
                                ("referenceId", reference), ("requestId", .integer(id.rawValue)), ("status", .string("scheduled")),
                                ("scheduledFor", .string(Timestamp.format(time))),
                            ])
                        case .skipped(let reason):
                            return .object([("referenceId", reference), ("status", .string("skipped")), ("reason", .string(reason.rawValue))])
                        }
                    })
            )
        ])
    }

    /// Reads every item of a send call, reporting every bad field; nothing is queued unless
    /// all are valid.
    static func drafts(from object: [String: JSONValue], now: Date) throws -> [SurveyRequestDraft] {
        var validator = FieldValidator()
        var drafts: [SurveyRequestDraft] = []
        switch object["requests"] {
        case nil, .null?:
            validator.fail("requests", "is required: an array of 1 to \(SendLimits.requestsPerCall.upperBound) requests")
        case .array(let items)?:
            guard SendLimits.requestsPerCall.contains(items.count) else {
                validator.fail("requests", "must hold 1 to \(SendLimits.requestsPerCall.upperBound) requests (got \(items.count))")
                break
            }
            for (index, item) in items.enumerated() {
                let path = "requests[\(index)]"
                guard case .object(let fields) = item else {
                    validator.fail(path, "must be an object, not \(item.kind)")
                    continue
                }
                if let draft = SurveyRequestDraft(json: fields, at: path, now: now, validator: &validator) { drafts.append(draft) }
            }
        case let other?:
            validator.fail("requests", "must be an array, not \(other.kind)")
        }
        try validator.check()
        return drafts
    }
}

extension SurveyRequestDraft {
    init?(json fields: [String: JSONValue], at path: String, now: Date, validator: inout FieldValidator) {
        let errorsBefore = validator.errors.count
        var channel: Channel?
        switch fields["channel"] {
        case nil, .null?:
            validator.fail("\(path).channel", "is required; one of: \(Channel.allCases.map(\.rawValue).joined(separator: ", "))")
        case .string(let name)?:
            channel = Channel(rawValue: name)
            if channel == nil {
                validator.fail("\(path).channel", "must be one of: \(Channel.allCases.map(\.rawValue).joined(separator: ", ")) (got \(name.prefix(40).debugDescription))")
            }
        case let other?:
            validator.fail("\(path).channel", "must be a string, not \(other.kind)")
        }

        var destination: Destination?
        switch fields["destination"] {
        case nil, .null?:
            validator.fail("\(path).destination", "is required: \(channel?.destinationHint ?? "where to send it, as the channel expects")")
        case .string(let text)?:
            // Read only once the channel is known: it decides what a destination is.
            if let channel {
                do {
                    destination = try Destination(text, channel: channel)
                } catch {
                    validator.fail("\(path).destination", error.message)
                }
            }
        case let other?:
            validator.fail("\(path).destination", "must be a string, not \(other.kind)")
        }

        var segments: [String] = []
        switch fields["segments"] {
        case nil, .null?:
            break
        case .array(let values)?:
            if values.count > SendLimits.segmentsPerRequest.upperBound {
                validator.fail("\(path).segments", "must hold at most \(SendLimits.segmentsPerRequest.upperBound) segments (got \(values.count))")
            } else {
                for (index, value) in values.enumerated() {
                    let segmentPath = "\(path).segments[\(index)]"
                    guard case .string(let segment) = value else {
                        validator.fail(segmentPath, "must be a string, not \(value.kind)")
                        continue
                    }
                    guard let segment = validator.checkString(segment, at: segmentPath, length: SendLimits.segmentLength) else { continue }
                    if segment.contains(",") {
                        validator.fail(segmentPath, "must not contain commas (report filters separate segments with them)")
                        continue
                    }
                    if !segments.contains(segment) { segments.append(segment) }
                }
            }
        case let other?:
            validator.fail("\(path).segments", "must be an array of strings, not \(other.kind)")
        }

        var referenceID: String?
        if let value = fields["referenceId"], value != .null {
            referenceID = validator.string(fields, "referenceId", at: "\(path).referenceId", length: SendLimits.referenceIDLength)
        }
        var language: LanguageTag?
        if let value = fields["language"], value != .null {
            language = validator.languageTag(fields, "language", at: "\(path).language")
        }

        var sendAt: Date?
        switch fields["sendAt"] {
        case nil, .null?:
            break
        case .string(let text)?:
            if let instant = Timestamp.parseInstant(text) {
                if instant.timeIntervalSince(now) > SendSchedule.maximumLead {
                    validator.breaks("\(path).sendAt", "must be at most \(Int(SendSchedule.maximumLead / 86_400)) days ahead")
                } else {
                    sendAt = instant
                }
            } else {
                validator.fail("\(path).sendAt", "must be an ISO 8601 date-time with an offset, e.g. 2026-12-24T18:00:00+01:00")
            }
        case let other?:
            validator.fail("\(path).sendAt", "must be a string, not \(other.kind)")
        }

        guard validator.errors.count == errorsBefore, let channel, let destination else { return nil }
        self.init(
            channel: channel, destination: destination, segments: segments, referenceID: referenceID, language: language,
            sendAt: sendAt)
    }
}

extension HTTPField.Name {
    static let idempotencyKey = Self("Idempotency-Key")!
    static let idempotentReplayed = Self("Idempotent-Replayed")!
}
