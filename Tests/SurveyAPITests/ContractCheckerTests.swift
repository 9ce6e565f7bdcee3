import APITestSupport
import Foundation
import HTTPTypes
import SurveyAPI
import TestSupport
import Testing

/// The contract check itself can fail: responses that break `openapi.yaml` are caught.
@Suite struct ContractCheckerTests {
    let contract = OpenAPIContract.shared
    let id: HTTPFields = [
        HTTPField.Name("X-Request-Id")!: "0123456789abcdef0123456789abcdef", .contentType: "application/json",
        .cacheControl: "no-store",
    ]

    func violations(_ method: HTTPRequest.Method, _ uri: String, _ status: Int, _ headers: HTTPFields, _ body: String) -> [String] {
        contract.violations(method: method, uri: uri, status: status, headers: headers, body: Data(body.utf8))
    }

    @Test func aConformingResponsePasses() {
        #expect(violations(.get, "/health", 200, id, #"{"status":"ok"}"#) == [])
        #expect(contract.template(for: "/survey/1.0.0/report/trend") == "/survey/1.0.0/report/trend")
        #expect(contract.template(for: "/survey/1.0.0/surveys/12/report") == "/survey/1.0.0/surveys/{id}/report")
    }

    @Test func brokenResponsesAreCaught() {
        var noID = id
        noID[HTTPField.Name("X-Request-Id")!] = nil
        #expect(!violations(.get, "/health", 200, noID, #"{"status":"ok"}"#).isEmpty, "a required header missing")
        #expect(!violations(.get, "/health", 200, id, #"{"status":1}"#).isEmpty, "a member of the wrong type")
        #expect(!violations(.get, "/health", 200, id, #"{"status":"ok","extra":true}"#).isEmpty, "an undocumented member")
        #expect(!violations(.get, "/health", 418, id, #"{}"#).isEmpty, "an undocumented status")
        #expect(!violations(.put, "/health", 200, id, #"{}"#).isEmpty, "an undocumented method")
        var problem = id
        problem[.contentType] = "application/problem+json"
        problem[.retryAfter] = "soon"
        #expect(
            !violations(.get, "/ready", 503, problem, #"{"type":"about:blank","title":"Not ready","status":503,"detail":"x","instance":"/ready"}"#)
                .isEmpty, "Retry-After must be an integer")
        #expect(!violations(.get, "/nowhere", 404, id, #"{}"#).isEmpty, "an error that is not problem+json")
        var plain = id
        plain[.contentType] = "application/problem+json"
        let notFound = #"{"type":"about:blank","title":"Not Found","status":404,"instance":"/survey/1.0.0/surveys/7"}"#
        #expect(violations(.get, "/survey/1.0.0/surveys/7", 404, plain, notFound) == [])
        #expect(
            !violations(.get, "/survey/1.0.0/surveys/7", 404, plain, notFound.replacingOccurrences(of: "404", with: "400")).isEmpty,
            "a problem whose status is not the response's")
    }
}
