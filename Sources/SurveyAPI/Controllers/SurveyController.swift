import HTTPTypes
import Hummingbird
import SurveyDomain
import SurveyStorage

/// `/surveys`: create, list, read and delete a company's surveys, and add questions.
struct SurveyController {
    let surveys: SurveyRepository

    static let defaultPageSize = 100
    static let pageSizes = 1...1000

    func addRoutes(to routes: Routes<TenantRequestContext>) {
        routes.on(.post, "surveys", use: create)
        routes.on(.get, "surveys", use: list)
        routes.on(.get, "surveys/:id", use: get)
        routes.on(.delete, "surveys/:id", use: delete)
        routes.on(.post, "surveys/:id/question", use: addQuestion)
    }

    @Sendable func create(request: Request, context: TenantRequestContext) async throws -> JSONReply<SurveyResponse> {
        let survey = try NewSurvey(json: try await JSONValue.object(from: request, context: context))
        let created = try await surveys.create(survey, company: context.company)
        return JSONReply(status: .created, body: SurveyResponse(created))
    }

    /// A plain JSON array, as in the API reference; the next page, if any, is announced in
    /// a `Link: <…>; rel="next"` header so the body keeps that shape.
    @Sendable func list(request: Request, context: TenantRequestContext) async throws -> JSONReply<[SurveyResponse]> {
        var validator = FieldValidator()
        var limit = Self.defaultPageSize
        if let text = request.uri.queryParameters["limit"] {
            if let value = Int(text), Self.pageSizes.contains(value) {
                limit = value
            } else {
                validator.fail("limit", "must be an integer from \(Self.pageSizes.lowerBound) to \(Self.pageSizes.upperBound)")
            }
        }
        var after: SurveyID?
        if let text = request.uri.queryParameters["after"] {
            after = SurveyID(parsing: text[...])
            if after == nil { validator.fail("after", "must be a survey id (a positive integer)") }
        }
        try validator.check()
        // One more than asked tells whether a next page exists without a count.
        var page = try await surveys.list(after: after, limit: limit + 1, company: context.company)
        var headers: HTTPFields = [:]
        if page.count > limit {
            page.removeLast()
            headers[.link] = "<\(request.uri.path)?limit=\(limit)&after=\(page.last!.id)>; rel=\"next\""
        }
        return JSONReply(headers: headers, body: page.map(SurveyResponse.init))
    }

    @Sendable func get(request: Request, context: TenantRequestContext) async throws -> JSONReply<SurveyResponse> {
        let id = try surveyID(context)
        guard let survey = try await surveys.find(id, company: context.company) else { throw Problem.notFound("No survey \(id).") }
        return JSONReply(body: SurveyResponse(survey))
    }

    @Sendable func delete(request: Request, context: TenantRequestContext) async throws -> HTTPResponse.Status {
        let id = try surveyID(context)
        do {
            try await surveys.delete(id, company: context.company)
        } catch StorageError.notFound {
            throw Problem.notFound("No survey \(id).")
        }
        return .noContent
    }

    @Sendable func addQuestion(request: Request, context: TenantRequestContext) async throws -> JSONReply<SurveyResponse.QuestionResponse> {
        let id = try surveyID(context)
        var validator = FieldValidator()
        let question = NewQuestion(json: try await JSONValue.object(from: request, context: context), at: "", validator: &validator)
        try validator.check()
        do {
            let created = try await surveys.addQuestion(question!, to: id, company: context.company)
            return JSONReply(status: .created, body: .init(created))
        } catch StorageError.notFound {
            throw Problem.notFound("No survey \(id).")
        } catch StorageError.duplicateLanguage(let language) {
            throw Problem.conflict(
                "Survey \(id) already has a question in \(language); one question per language.",
                errors: [.init(field: "language", message: "already used by another question of this survey")])
        }
    }

    private func surveyID(_ context: TenantRequestContext) throws -> SurveyID {
        let text = context.parameters.get("id") ?? ""
        guard let id = SurveyID(parsing: text[...]) else {
            throw Problem.invalidField("id", "must be a survey id (a positive integer)")
        }
        return id
    }
}

extension HTTPField.Name {
    /// RFC 8288 web linking, for pagination.
    static let link = Self("Link")!
}
