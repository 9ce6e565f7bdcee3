import Foundation
import Hummingbird
import SurveyDomain
import SurveyStorage

/// `/tokens` and `/settings`: the company's administrator (a token of scope `admin`)
/// manages its own API tokens and sending settings, without the operator. The daily SMS
/// cap and the request rate limit stay the operator's: shown, not changed here.
struct CompanySelfServiceController {
    let companies: CompanyRepository

    func addRoutes(to routes: Routes<TenantRequestContext>) {
        routes.on(.get, "tokens", use: listTokens)
        routes.on(.post, "tokens", use: createToken)
        routes.on(.delete, "tokens/:id", use: revokeToken)
        routes.on(.get, "settings", use: settings)
        routes.on(.patch, "settings", use: updateSettings)
    }

    @Sendable func listTokens(request: Request, context: TenantRequestContext) async throws -> JSONReply<TokenListBody> {
        try context.requireAdmin()
        return JSONReply(body: TokenListBody(tokens: try await companies.tokens(company: context.company)))
    }

    /// A `read` or `write` token (`admin` ones come from the operator).
    @Sendable func createToken(request: Request, context: TenantRequestContext) async throws -> JSONReply<CreatedTokenBody> {
        try context.requireAdmin()
        let scope = try await TokenRequest.scope(request, context: context, allowed: [.read, .write])
        let (id, token) = try await companies.createToken(company: context.company, scope: scope)
        return JSONReply(status: .created, body: CreatedTokenBody(id: id.rawValue, token: token.secret, scope: scope))
    }

    @Sendable func revokeToken(request: Request, context: TenantRequestContext) async throws -> HTTPResponse.Status {
        try context.requireAdmin()
        guard let id = TokenID(parsing: (context.parameters.get("id") ?? "")[...]) else {
            throw Problem.invalidField("id", "must be a token id (a positive integer)")
        }
        do {
            try await companies.revokeToken(id, company: context.company, keepingAnAdmin: true)
        } catch StorageError.notFound {
            throw Problem.notFound("No token \(id).")
        } catch StorageError.lastAdminToken {
            throw Problem.conflict("Token \(id) is your company's last admin token; issue another admin token (ask the operator) before revoking it.")
        }
        return .noContent
    }

    struct SettingsBody: JSONResponse {
        var settings: CompanySettings
        var json: JSONDocument {
            .object([
                ("resurveyDays", .integer(Int64(settings.resurveyDays))),
                ("quietHours", settings.quietHours.map(SettingsWire.quietHours) ?? .null),
                ("timezone", .string(settings.timeZone)),
                ("dailySmsCap", .integer(Int64(settings.dailySMSCap))),
                ("dailyEmailCap", .integer(Int64(settings.dailyEmailCap))),
                ("dailyVoiceCap", .integer(Int64(settings.dailyVoiceCap))),
                ("voiceCallAttempts", .integer(Int64(settings.voiceRetry.attempts))),
                ("voiceRetryMinutes", .integer(Int64(settings.voiceRetry.minutes))),
                ("requestRateLimit", settings.requestRateLimit.map(SettingsWire.rateLimit) ?? .null),
            ])
        }
    }

    @Sendable func settings(request: Request, context: TenantRequestContext) async throws -> JSONReply<SettingsBody> {
        try context.requireAdmin()
        guard let company = try await companies.find(context.company) else { throw Problem.notFound("No such company.") }
        return JSONReply(body: SettingsBody(settings: company.settings))
    }

    /// A JSON merge patch of `resurveyDays`, `quietHours`, `timezone` and the rule for calls
    /// nobody answered (`voiceCallAttempts`, `voiceRetryMinutes`).
    @Sendable func updateSettings(request: Request, context: TenantRequestContext) async throws -> JSONReply<SettingsBody> {
        try context.requireAdmin()
        let object = try await JSONValue.object(from: request, context: context)
        var validator = FieldValidator()
        for key in ["dailySmsCap", "dailyEmailCap", "dailyVoiceCap", "requestRateLimit"] where object[key] != nil {
            validator.fail(key, "is set by the operator of the service, not by the company")
        }
        validator.rejectUnknown(
            object, known: [
                "resurveyDays", "quietHours", "timezone", "voiceCallAttempts", "voiceRetryMinutes", "dailySmsCap", "dailyEmailCap",
                "dailyVoiceCap", "requestRateLimit",
            ])
        let change = CompanySettingsChange(
            resurveyDays: validator.integer(object, "resurveyDays", at: "resurveyDays", range: CompanyLimits.resurveyDays),
            voiceCallAttempts: validator.integer(object, "voiceCallAttempts", at: "voiceCallAttempts", range: CompanyLimits.voiceCallAttempts),
            voiceRetryMinutes: validator.integer(object, "voiceRetryMinutes", at: "voiceRetryMinutes", range: CompanyLimits.voiceRetryMinutes),
            quietHours: SettingsWire.quietHoursChange(object["quietHours"], &validator),
            timeZone: SettingsWire.timeZone(object["timezone"], &validator))
        if change.isEmpty, validator.errors.isEmpty { validator.fail("body", "must set resurveyDays, quietHours, timezone, voiceCallAttempts or voiceRetryMinutes") }
        try validator.check()
        return JSONReply(body: SettingsBody(settings: try await companies.update(context.company, change).settings))
    }
}
