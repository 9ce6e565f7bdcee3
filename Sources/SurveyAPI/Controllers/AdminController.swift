import Hummingbird
import NIOCore
import SurveyDomain
import SurveyStorage

/// `/admin`: the operator's API to create companies, change their settings and manage
/// their tokens.
struct AdminController<Context: RequestContext> {
    let companies: CompanyRepository

    func addRoutes(to routes: Routes<Context>) {
        routes.on(.post, "companies", use: createCompany)
        routes.on(.get, "companies/:id", use: getCompany)
        routes.on(.patch, "companies/:id", use: updateCompany)
        routes.on(.post, "companies/:id/tokens", use: createToken)
        routes.on(.get, "companies/:id/tokens", use: listTokens)
        routes.on(.delete, "companies/:id/tokens/:tokenId", use: revokeToken)
    }

    struct CompanyBody: JSONResponse {
        var company: Company
        /// Only when the company was just created: its first token, shown once, never stored.
        var token: String?
        var json: JSONDocument {
            var members: [(String, JSONDocument)] = [
                ("id", .integer(company.id.rawValue)), ("name", .string(company.name)),
                ("createdAt", .string(Timestamp.format(company.createdAt))),
                ("resurveyDays", .integer(Int64(company.settings.resurveyDays))),
                ("dailySmsCap", .integer(Int64(company.settings.dailySMSCap))),
                ("dailyEmailCap", .integer(Int64(company.settings.dailyEmailCap))),
                ("dailyVoiceCap", .integer(Int64(company.settings.dailyVoiceCap))),
                ("voiceCallAttempts", .integer(Int64(company.settings.voiceRetry.attempts))),
                ("voiceRetryMinutes", .integer(Int64(company.settings.voiceRetry.minutes))),
                ("requestRateLimit", company.settings.requestRateLimit.map(SettingsWire.rateLimit) ?? .null),
                ("quietHours", company.settings.quietHours.map(SettingsWire.quietHours) ?? .null),
                ("timezone", .string(company.settings.timeZone)),
            ]
            if let token { members.append(("token", .string(token))) }
            return .object(members)
        }
    }

    @Sendable func createCompany(request: Request, context: Context) async throws -> JSONReply<CompanyBody> {
        let object = try await JSONValue.object(from: request, context: context)
        var validator = FieldValidator()
        validator.rejectUnknown(object, known: ["name", "resurveyDays", "dailySmsCap", "dailyEmailCap", "dailyVoiceCap", "voiceCallAttempts", "voiceRetryMinutes", "requestRateLimit", "quietHours", "timezone"])
        let name = validator.string(object, "name", at: "name", length: CompanyLimits.nameLength)
        let change = Self.settingsChange(object, &validator)
        try validator.check()
        let (company, _, token) = try await companies.create(name: name!, settings: change.applied(to: CompanySettings()))
        return JSONReply(status: .created, body: CompanyBody(company: company, token: token.secret))
    }

    @Sendable func getCompany(request: Request, context: Context) async throws -> JSONReply<CompanyBody> {
        let id = try id(CompanyID.self, "id", context)
        guard let company = try await companies.find(id) else { throw Problem.notFound("No company \(id).") }
        return JSONReply(body: CompanyBody(company: company))
    }

    /// A JSON merge patch (RFC 7396) of the settings: members left out stay as they are.
    @Sendable func updateCompany(request: Request, context: Context) async throws -> JSONReply<CompanyBody> {
        let id = try id(CompanyID.self, "id", context)
        let object = try await JSONValue.object(from: request, context: context)
        var validator = FieldValidator()
        validator.rejectUnknown(object, known: ["resurveyDays", "dailySmsCap", "dailyEmailCap", "dailyVoiceCap", "voiceCallAttempts", "voiceRetryMinutes", "requestRateLimit", "quietHours", "timezone"])
        let change = Self.settingsChange(object, &validator)
        if change.isEmpty, validator.errors.isEmpty {
            validator.fail("body", "must set resurveyDays, dailySmsCap, dailyEmailCap, dailyVoiceCap, voiceCallAttempts, voiceRetryMinutes, requestRateLimit, quietHours or timezone")
        }
        try validator.check()
        do {
            return JSONReply(body: CompanyBody(company: try await companies.update(id, change)))
        } catch StorageError.notFound {
            throw Problem.notFound("No company \(id).")
        }
    }

    @Sendable func createToken(request: Request, context: Context) async throws -> JSONReply<CreatedTokenBody> {
        let company = try id(CompanyID.self, "id", context)
        let scope = try await Self.requestedScope(request, context: context)
        do {
            let (tokenID, token) = try await companies.createToken(company: company, scope: scope)
            return JSONReply(status: .created, body: CreatedTokenBody(id: tokenID.rawValue, token: token.secret, scope: scope))
        } catch StorageError.notFound {
            throw Problem.notFound("No company \(company).")
        }
    }

    @Sendable func listTokens(request: Request, context: Context) async throws -> JSONReply<TokenListBody> {
        let company = try id(CompanyID.self, "id", context)
        do {
            return JSONReply(body: TokenListBody(tokens: try await companies.tokens(company: company)))
        } catch StorageError.notFound {
            throw Problem.notFound("No company \(company).")
        }
    }

    @Sendable func revokeToken(request: Request, context: Context) async throws -> HTTPResponse.Status {
        let company = try id(CompanyID.self, "id", context)
        let token = try id(TokenID.self, "tokenId", context)
        do {
            try await companies.revokeToken(token, company: company)
        } catch StorageError.notFound {
            throw Problem.notFound("No token \(token) for company \(company).")
        }
        return .noContent
    }

    private static func settingsChange(_ object: [String: JSONValue], _ validator: inout FieldValidator) -> CompanySettingsChange {
        CompanySettingsChange(
            resurveyDays: validator.integer(object, "resurveyDays", at: "resurveyDays", range: CompanyLimits.resurveyDays),
            dailySMSCap: validator.integer(object, "dailySmsCap", at: "dailySmsCap", range: CompanyLimits.dailySMSCap),
            dailyEmailCap: validator.integer(object, "dailyEmailCap", at: "dailyEmailCap", range: CompanyLimits.dailyEmailCap),
            dailyVoiceCap: validator.integer(object, "dailyVoiceCap", at: "dailyVoiceCap", range: CompanyLimits.dailyVoiceCap),
            voiceCallAttempts: validator.integer(object, "voiceCallAttempts", at: "voiceCallAttempts", range: CompanyLimits.voiceCallAttempts),
            voiceRetryMinutes: validator.integer(object, "voiceRetryMinutes", at: "voiceRetryMinutes", range: CompanyLimits.voiceRetryMinutes),
            requestRateLimit: rateLimitChange(object["requestRateLimit"], &validator),
            quietHours: SettingsWire.quietHoursChange(object["quietHours"], &validator),
            timeZone: SettingsWire.timeZone(object["timezone"], &validator))
    }

    /// `requestRateLimit`: `{"perSecond": 20, "burst": 40}` sets the company's own limit,
    /// `null` returns it to the service's default, absent leaves it.
    private static func rateLimitChange(
        _ value: JSONValue?, _ validator: inout FieldValidator
    ) -> CompanySettingsChange.RateLimitChange? {
        switch value {
        case nil:
            return nil
        case .null?:
            return .useDefault
        case .object(let limit)?:
            validator.rejectUnknown(limit, known: ["perSecond", "burst"], at: "requestRateLimit")
            let rate = validator.number(limit, "perSecond", at: "requestRateLimit.perSecond", range: CompanyLimits.requestsPerSecond)
            let burst = validator.integer(limit, "burst", at: "requestRateLimit.burst", range: CompanyLimits.requestBurst)
            // Both halves, and not null: `null` for the whole object is how to drop the limit.
            for key in ["perSecond", "burst"] where limit[key] == nil || limit[key] == .null {
                validator.fail("requestRateLimit.\(key)", "is required")
            }
            guard let rate, let burst else { return nil }
            return .set(RateLimit(ratePerSecond: rate, burst: burst))
        default:
            validator.fail("requestRateLimit", "must be an object {perSecond, burst} or null")
            return nil
        }
    }

    /// The body is optional: none (or `{}`) asks for a `write` token. The operator may
    /// issue any scope, `admin` included (a company's first administrator token).
    private static func requestedScope(_ request: Request, context: Context) async throws -> TokenScope {
        try await TokenRequest.scope(request, context: context, allowed: TokenScope.allCases)
    }

    private func id<Tag>(_ type: Identifier<Tag>.Type, _ name: String, _ context: Context) throws -> Identifier<Tag> {
        guard let id = Identifier<Tag>(parsing: (context.parameters.get(name) ?? "")[...]) else {
            throw Problem.invalidField(name, "must be a positive integer")
        }
        return id
    }
}
