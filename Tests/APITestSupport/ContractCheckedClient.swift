import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// A test client that checks every response against `openapi.yaml` and records an issue
/// for each violation, so every test that calls the API also tests the contract.
public struct ContractCheckedClient: TestClientProtocol {
    let base: any TestClientProtocol
    let contract: OpenAPIContract

    public init(_ base: any TestClientProtocol, contract: OpenAPIContract = .shared) {
        self.base = base
        self.contract = contract
    }

    public var port: Int? { base.port }

    public func executeRequest(
        uri: String, method: HTTPRequest.Method, headers: HTTPFields, body: ByteBuffer?
    ) async throws -> TestResponse {
        let response = try await base.executeRequest(uri: uri, method: method, headers: headers, body: body)
        for violation in contract.violations(
            method: method, uri: uri, status: Int(response.status.code), headers: response.headers,
            body: Data(response.body.readableBytesView))
        {
            Issue.record("openapi.yaml: \(violation)")
        }
        return response
    }
}

extension ApplicationProtocol {
    /// `test(.router)` (or `.live`, served on a port), with every response checked against
    /// `openapi.yaml`.
    public func testContract<Value: Sendable>(
        _ setup: TestingSetup = .router, _ body: @Sendable (any TestClientProtocol) async throws -> Value
    ) async throws -> Value {
        try await test(setup) { client in try await body(ContractCheckedClient(client)) }
    }
}
