import Foundation
import Hummingbird
import SurveyDomain
import SurveyStorage

/// A token just issued: its secret, shown this once.
struct CreatedTokenBody: JSONResponse {
    var id: Int64
    var token: String
    var scope: TokenScope
    var json: JSONDocument {
        .object([("id", .integer(id)), ("token", .string(token)), ("scope", .string(scope.rawValue))])
    }
}

/// A company's tokens, by hint: never their secrets.
struct TokenListBody: JSONResponse {
    var tokens: [TokenRecord]
    var json: JSONDocument {
        .object([
            (
                "tokens",
                .array(
                    tokens.map { token in
                        .object([
                            ("id", .integer(token.id.rawValue)), ("hint", .string(token.hint)),
                            ("scope", .string(token.scope.rawValue)),
                            ("createdAt", .string(Timestamp.format(token.createdAt))),
                            ("lastUsedAt", token.lastUsedAt.map { .string(Timestamp.format($0)) } ?? .null),
                            ("revokedAt", token.revokedAt.map { .string(Timestamp.format($0)) } ?? .null),
                        ])
                    })
            )
        ])
    }
}

/// The body of a token request: `{"scope": …}`, optional (none or `{}` asks for `write`).
enum TokenRequest {
    static func scope(_ request: Request, context: some RequestContext, allowed: [TokenScope]) async throws -> TokenScope {
        let body = try await request.body.collect(upTo: context.maxUploadSize)
        guard body.readableBytes > 0 else { return .write }
        let object = try JSONValue.object(from: body, request: request)
        var validator = FieldValidator()
        validator.rejectUnknown(object, known: ["scope"])
        var scope = TokenScope.write
        if let value = object["scope"] {
            if case .string(let text) = value, let parsed = TokenScope(rawValue: text), allowed.contains(parsed) {
                scope = parsed
            } else {
                validator.fail("scope", "must be one of \(allowed.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))")
            }
        }
        try validator.check()
        return scope
    }
}
