import OpenAPIRuntime

/// Compiles only while the generated client types getSurvey's 404 as the contract's
/// `Problem` (what openapi-python-client could not do before the error responses lost
/// their per-status `allOf`).
public func problem(of output: Operations.GetSurvey.Output) -> Components.Schemas.Problem? {
    switch output {
    case .notFound(let response): try? response.body.applicationProblemJson
    case .badRequest(let response): try? response.body.applicationProblemJson
    default: nil
    }
}
