import Foundation
import HTTPTypes
import OpenAPIRuntime
import SurveydClient
import Testing

/// Answers every call with one canned response, as the server would.
struct CannedTransport: ClientTransport {
    var status: HTTPResponse.Status
    var contentType = "application/json"
    var body: String

    func send(_ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String) async throws -> (HTTPResponse, HTTPBody?) {
        var fields = HTTPFields()
        fields[.contentType] = contentType
        fields[HTTPField.Name("X-Request-Id")!] = "0123456789abcdef0123456789abcdef"
        return (HTTPResponse(status: status, headerFields: fields), HTTPBody(self.body))
    }
}

func client(_ transport: CannedTransport, configuration: Configuration = .init(dateTranscoder: .iso8601WithFractionalSeconds)) -> Client {
    Client(serverURL: URL(string: "http://localhost:8080")!, configuration: configuration, transport: transport)
}

// Bodies as the server writes them (README's examples).
let notFound = #"{"type":"about:blank","title":"Not Found","status":404,"detail":"No survey 7 for your company.","instance":"/survey/1.0.0/surveys/7"}"#
let report = #"""
    {"date":"2026-11-29T15:02:11.408+01:00","from":"2026-11-01T00:00:00.000+01:00","to":"2026-12-01T00:00:00.000+01:00",
     "segments":[],"segmentMode":"ALL","nps":{"promoters":1,"detractors":0,"score":100,"passives":0,"marginOfError":0},
     "responseStatistics":{"totalRequests":1,"totalResponses":1,"goodResponses":1,"badResponses":0,"failed":0,"responseRate":100},
     "surveyId":8,"channel":null,"timezone":"Europe/Brussels"}
    """#

@Test func aNotFoundIsATypedProblem() async throws {
    let output = try await client(.init(status: .notFound, contentType: "application/problem+json", body: notFound))
        .getSurvey(path: .init(id: 7))
    let typed = try #require(problem(of: output))
    #expect(typed.status == 404)
    #expect(typed.instance == "/survey/1.0.0/surveys/7")
}

@Test func aSurveyReportDecodes() async throws {
    let output = try await client(.init(status: .ok, body: report)).getSurveyReport(path: .init(id: 8))
    let body = try output.ok.body.json
    #expect(body.surveyId == 8)
    #expect(body.responseStatistics.totalRequests == 1)
    #expect(body.timezone == "Europe/Brussels")
    #expect(body.channel == nil)
}

/// The runtime's default date transcoder reads no fractional seconds; the server always
/// writes milliseconds, so a Swift client needs `.iso8601WithFractionalSeconds`.
@Test func theDefaultDateTranscoderCannotReadOurTimestamps() async throws {
    await #expect(throws: (any Error).self) {
        _ = try await client(.init(status: .ok, body: report), configuration: .init()).getSurveyReport(path: .init(id: 8))
    }
}
