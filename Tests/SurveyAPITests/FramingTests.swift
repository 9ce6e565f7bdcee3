import APITestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import SurveyAPI
import SurveyStorage
import TestSupport
import Testing

/// What only a real connection can send: framing an HTTP client library would not produce.
@Suite struct FramingTests {
    let harness: Harness
    init() async throws { harness = try await Harness() }

    /// Issue 12: an unsupported Transfer-Encoding was a 500 on every route with a body.
    @Test(arguments: ["gzip", "xchunked", "identity", "gzip, chunked", "chunked, chunked"])
    func unsupportedTransferCodingsAre400(_ coding: String) async throws {
        let tenant = try await harness.company()
        var configuration = Harness.configuration()
        configuration.webhooks = .init(
            authToken: "token", accountSID: "AC" + String(repeating: "0", count: 32), publicBaseURL: "http://surveyd.test")
        let database = Database(client: Database.applicationPool(
            url: try TestDatabase.url(), applicationName: "framing-test", maximumConnections: 2, logger: TestDatabase.logger))
        let application = buildApplication(configuration: configuration, database: database, logger: TestDatabase.logger)
        try await application.test(.live) { client in
            let port = try #require(client.port)
            for (path, headers) in [
                ("/survey/1.0.0/surveys", "Authorization: \(tenant.headers[.authorization]!)\r\nContent-Type: application/json\r\n"),
                ("/webhooks/twilio/sms", "Content-Type: application/x-www-form-urlencoded\r\n"),
            ] {
                let connection = try await RawConnection.open(port: port)
                try await connection.write(
                    "POST \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\(headers)Transfer-Encoding: \(coding)\r\n\r\n5\r\n{\"a\":\r\n0\r\n\r\n")
                let (text, _) = try await connection.readUntilClosed(timeout: .seconds(5))
                #expect(text.hasPrefix("HTTP/1.1 400"), "\(path): \(text.prefix(200))")
            }
        }
        #expect(try await harness.count("surveys", company: tenant.id) == 0)
    }
}
