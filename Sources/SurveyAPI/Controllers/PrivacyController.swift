import Foundation
import Hummingbird
import SurveyDomain
import SurveyStorage

/// `/erasures` and `/opt-outs`: a company honouring its customers' requests — to be
/// forgotten (by the company's own reference for them), or never to be surveyed again by
/// this company.
struct PrivacyController {
    let privacy: PrivacyRepository
    let hasher: DestinationHasher

    func addRoutes(to routes: Routes<TenantRequestContext>) {
        routes.on(.post, "erasures", use: erase)
        routes.on(.post, "opt-outs", use: suppress)
        routes.on(.delete, "opt-outs", use: unsuppress)
    }

    struct Erased: JSONResponse {
        var requests: Int
        var json: JSONDocument { .object([("requests", .integer(Int64(requests)))]) }
    }

    /// 202: the requests are unlinked when this returns; the answer says how many, never
    /// the reference itself.
    @Sendable func erase(request: Request, context: TenantRequestContext) async throws -> JSONReply<Erased> {
        let object = try await JSONValue.object(from: request, context: context)
        var validator = FieldValidator()
        validator.rejectUnknown(object, known: ["referenceId"])
        let reference = validator.string(object, "referenceId", at: "referenceId", length: SendLimits.referenceIDLength)
        if object["referenceId"] == nil || object["referenceId"] == .null {
            validator.fail("referenceId", "is required: the referenceId your send calls gave this customer's requests")
        }
        try validator.check()
        // The member exactly as the send call's stored answer has it (the same writer).
        var member = JSONWriter()
        member.beginObject()
        member.key("referenceId")
        member.string(reference!)
        member.endObject()
        let text = String(decoding: member.bytes.dropFirst().dropLast(), as: UTF8.self)
        let count = try await privacy.erase(referenceID: reference!, replayedMember: text, company: context.company)
        return JSONReply(status: .accepted, body: Erased(requests: count))
    }

    @Sendable func suppress(request: Request, context: TenantRequestContext) async throws -> HTTPResponse.Status {
        let hash = try await destinationHash(request, context)
        try await privacy.suppress(hash, company: context.company)
        return .noContent
    }

    @Sendable func unsuppress(request: Request, context: TenantRequestContext) async throws -> HTTPResponse.Status {
        let hash = try await destinationHash(request, context)
        guard try await privacy.unsuppress(hash, company: context.company) else {
            throw Problem.notFound("This destination is not on your suppression list.")
        }
        return .noContent
    }

    /// `{"destination": "+32…"}` or `{"destination": "jane@example.com"}`, hashed at once:
    /// the number or address itself is never stored.
    private func destinationHash(_ request: Request, _ context: TenantRequestContext) async throws -> Data {
        let object = try await JSONValue.object(from: request, context: context)
        var validator = FieldValidator()
        validator.rejectUnknown(object, known: ["destination"])
        var destination: Destination?
        if case .string(let text)? = object["destination"] {
            do {
                destination = try Destination(text, channel: text.contains("@") ? .email : .sms)
            } catch {
                validator.fail("destination", error.message)
            }
        } else {
            validator.fail(
                "destination",
                "is required: an E.164 phone number, + then 8 to 15 digits, no spaces (e.g. +32472306705), or an e-mail address")
        }
        try validator.check()
        return hasher.hash(destination!)
    }
}
