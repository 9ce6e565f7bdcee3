import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOPosix
import SurveyAPI
import SurveyDomain
import TestSupport
import Testing
import WebhookSender

/// `/webhooks` as a company's administrator meets it: what a URL must be (OWASP API7:2023,
/// server-side request forgery), what events may be named, who may manage endpoints, and
/// that bad input changes nothing. DNS is a table here: names resolve as an attacker who
/// owns them would make them.
@Suite struct WebhookEndpointAPITests {
    let harness: Harness
    init() async throws { harness = try await Harness() }

    struct TableResolver: HostResolver {
        var table: [String: [[UInt8]]] = [
            "hooks.example.com": [[93, 184, 216, 34], [0x26, 0x06, 0x28, 0, 0x02, 0x20, 0, 1, 0x2, 0x48, 0x18, 0x93, 0x25, 0xc8, 0x19, 0x46]],
            "internal.example.com": [[10, 0, 0, 5]],
            "metadata.example.com": [[169, 254, 169, 254]],
            "mixed.example.com": [[93, 184, 216, 34], [192, 168, 1, 1]],
            "loopback6.example.com": [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]],
        ]
        func addresses(of host: String) async throws -> [[UInt8]] {
            guard let addresses = table[host] else { throw HostResolutionError(host: host, code: -2) }
            return addresses
        }
    }

    /// The API as `serve` runs it, with public-only URLs (the default) and the table's DNS.
    func test(_ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        var configuration = Harness.configuration()
        let sender = WebhookSender(
            configuration: WebhookSender.Configuration(), resolver: TableResolver(),
            eventLoopGroup: MultiThreadedEventLoopGroup.singleton, logger: TestDatabase.logger)
        configuration.companyWebhooks = .init(sender: sender, resolver: TableResolver(), allowPrivateAddresses: false)
        try await harness.test(configuration: configuration, body)
        await sender.shutdown()
    }

    @Test func urlsThatCouldReachPrivateAddressesAreRefusedNamingTheField() async throws {
        let tenant = try await harness.company()
        let admin = try await harness.token(for: tenant, scope: .admin)
        try await test { client in
            let refused = [
                "http://hooks.example.com/nps", "https://127.0.0.1/nps", "https://10.1.2.3/nps", "https://169.254.169.254/latest/meta-data",
                "https://100.64.0.1/", "https://[::1]/nps", "https://[::ffff:10.0.0.1]/nps", "https://[fe80::1]/nps", "https://0.0.0.0/",
                "https://localhost/nps", "https://printer.local/", "https://user:pw@hooks.example.com/nps", "https://hooks.example.com/nps#x",
                "https://internal.example.com/nps", "https://metadata.example.com/", "https://mixed.example.com/nps",
                "https://loopback6.example.com/", "https://nowhere.example.com/nps", "https://2130706433/", "https://127.1/", "ftp://hooks.example.com/", "https://hooks.ex%61mple.com/nps",
                "not a url", "https://hooks.example.com/" + String(repeating: "a", count: 2100),
            ]
            for url in refused {
                let response = try await client.send(
                    .post, "\(base)/webhooks", headers: admin, body: #"{"url":"\#(url)","events":["response.received"]}"#)
                response.expectProblem(.badRequest)
                #expect(response.errorFields == ["url"], "\(url): \(response.text)")
            }
            #expect(try await harness.count("webhook_endpoints", company: tenant.id) == 0, "nothing stored")

            let created = try await client.send(
                .post, "\(base)/webhooks", headers: admin,
                body: #"{"url":"https://hooks.example.com/nps","events":["response.received","request.failed"],"description":"CRM"}"#)
            #expect(created.status == .created, "\(created.text)")
            let secret = try #require(created.object["secret"] as? String)
            #expect(WebhookSecret(secret)?.key.count == 32)
            #expect(created.object["enabled"] as? Bool == true && created.object["events"] as? [String] == ["response.received", "request.failed"])
            let id = try #require(created.object["id"] as? Int)
            // Never shown again.
            let listed = try await client.send(.get, "\(base)/webhooks", headers: admin)
            #expect(listed.array.count == 1 && !listed.text.contains(secret) && listed.array[0]["secret"] == nil)
            let shown = try await client.send(.get, "\(base)/webhooks/\(id)", headers: admin)
            #expect(!shown.text.contains(secret) && shown.object["description"] as? String == "CRM")

            // Stored as it will be requested: the very name that was checked.
            let spelled = try await client.send(
                .post, "\(base)/webhooks", headers: admin, body: #"{"url":"HTTPS://Hooks.EXAMPLE.com./nps?x=1","events":["request.failed"]}"#)
            #expect(spelled.object["url"] as? String == "https://hooks.example.com/nps?x=1", "\(spelled.text)")
            _ = try await client.send(.delete, "\(base)/webhooks/\(try #require(spelled.object["id"] as? Int))", headers: admin)

            // A change of URL is checked the same way; a refused one changes nothing.
            let moved = try await client.send(.patch, "\(base)/webhooks/\(id)", headers: admin, body: #"{"url":"https://internal.example.com/x","enabled":false}"#)
            moved.expectProblem(.badRequest)
            #expect(moved.errorFields == ["url"])
            let after = try await client.send(.get, "\(base)/webhooks/\(id)", headers: admin)
            #expect(after.object["url"] as? String == "https://hooks.example.com/nps" && after.object["enabled"] as? Bool == true)
        }
    }

    @Test func eventsDescriptionsAndPatchesAreChecked() async throws {
        let tenant = try await harness.company()
        let admin = try await harness.token(for: tenant, scope: .admin)
        try await test { client in
            let url = "https://hooks.example.com/nps"
            for (body, fields) in [
                (#"{"url":"\#(url)","events":[]}"#, ["events"]),
                (#"{"url":"\#(url)"}"#, ["events"]),
                (#"{"url":"\#(url)","events":["ping"]}"#, ["events[0]"]),
                (#"{"url":"\#(url)","events":["response.received","response.received"]}"#, ["events[1]"]),
                (#"{"url":"\#(url)","events":["response.recieved"]}"#, ["events[0]"]),
                (#"{"url":"\#(url)","events":"response.received"}"#, ["events"]),
                (#"{"url":"\#(url)","events":["request.failed"],"description":""}"#, ["description"]),
                (#"{"url":"\#(url)","events":["request.failed"],"secret":"whsec_mine"}"#, ["secret"]),
                (#"{"events":["request.failed"]}"#, ["url"]),
            ] {
                let response = try await client.send(.post, "\(base)/webhooks", headers: admin, body: body)
                response.expectProblem(.badRequest)
                #expect(response.errorFields == fields, "\(body): \(response.text)")
            }
            #expect(try await harness.count("webhook_endpoints", company: tenant.id) == 0)

            let created = try await client.send(.post, "\(base)/webhooks", headers: admin, body: #"{"url":"\#(url)","events":["request.failed"],"description":"ops"}"#)
            let id = try #require(created.object["id"] as? Int)
            let disabled = try await client.send(
                .patch, "\(base)/webhooks/\(id)", headers: admin,
                body: #"{"enabled":false,"description":null,"events":["request.expired","destination.opted_out"]}"#)
            #expect(disabled.status == .ok, "\(disabled.text)")
            #expect(disabled.object["enabled"] as? Bool == false && disabled.object["disabledReason"] as? String == "disabled by the company")
            #expect(disabled.object["description"] is NSNull && disabled.object["disabledAt"] is String)
            #expect(disabled.object["events"] as? [String] == ["request.expired", "destination.opted_out"])
            for (body, fields) in [
                ("{}", ["body"]), (#"{"enabled":"yes"}"#, ["enabled"]), (#"{"events":[]}"#, ["events"]), (#"{"colour":"red"}"#, ["colour"]),
            ] {
                let response = try await client.send(.patch, "\(base)/webhooks/\(id)", headers: admin, body: body)
                response.expectProblem(.badRequest)
                #expect(response.errorFields == fields, "\(body): \(response.text)")
            }
            for query in ["status=bogus", "limit=0", "limit=201", "after=x", "sort=asc"] {
                let response = try await client.send(.get, "\(base)/webhooks/\(id)/deliveries?\(query)", headers: admin)
                response.expectProblem(.badRequest)
            }
            #expect(try await client.send(.get, "\(base)/webhooks/\(id)/deliveries", headers: admin).array.isEmpty)
            #expect(try await client.send(.delete, "\(base)/webhooks/\(id)", headers: admin).status == .noContent)
            try await client.send(.get, "\(base)/webhooks/\(id)", headers: admin).expectProblem(.notFound)
            try await client.send(.delete, "\(base)/webhooks/\(id)", headers: admin).expectProblem(.notFound)
            try await client.send(.get, "\(base)/webhooks/abc", headers: admin).expectProblem(.badRequest)
        }
    }

    @Test func onlyAdminTokensManageEndpointsAndEachCompanySeesItsOwn() async throws {
        let tenant = try await harness.company()
        let other = try await harness.company()
        let admin = try await harness.token(for: tenant, scope: .admin)
        let otherAdmin = try await harness.token(for: other, scope: .admin)
        let reader = try await harness.token(for: tenant, scope: .read)
        try await test { client in
            let created = try await client.send(
                .post, "\(base)/webhooks", headers: admin, body: #"{"url":"https://hooks.example.com/a","events":["response.received"]}"#)
            let id = try #require(created.object["id"] as? Int)
            let routes: [(HTTPRequest.Method, String, String?)] = [
                (.get, "\(base)/webhooks", nil), (.post, "\(base)/webhooks", #"{"url":"https://hooks.example.com/b","events":["request.failed"]}"#),
                (.get, "\(base)/webhooks/\(id)", nil), (.patch, "\(base)/webhooks/\(id)", #"{"enabled":false}"#),
                (.delete, "\(base)/webhooks/\(id)", nil), (.post, "\(base)/webhooks/\(id)/rotate-secret", nil),
                (.post, "\(base)/webhooks/\(id)/test", nil), (.get, "\(base)/webhooks/\(id)/deliveries", nil),
                (.post, "\(base)/webhooks/\(id)/deliveries/1/retry", nil),
            ]
            for (method, path, body) in routes {
                for headers in [tenant.headers, reader] {
                    try await client.send(method, path, headers: headers, body: body).expectProblem(.forbidden)
                }
            }
            // Another company's administrator: every id of this company is unknown.
            for (method, path, body) in routes where path.contains("/\(id)") {
                try await client.send(method, path, headers: otherAdmin, body: body).expectProblem(.notFound)
            }
            #expect(try await client.send(.get, "\(base)/webhooks", headers: otherAdmin).array.isEmpty)
            let shown = try await client.send(.get, "\(base)/webhooks/\(id)", headers: admin)
            #expect(shown.object["enabled"] as? Bool == true, "nothing changed it")
        }
    }

    @Test func aCompanyHasAtMostTwentyEndpoints() async throws {
        let tenant = try await harness.company()
        let admin = try await harness.token(for: tenant, scope: .admin)
        try await test { client in
            for index in 0..<WebhookEndpoint.maximumPerCompany {
                let created = try await client.send(
                    .post, "\(base)/webhooks", headers: admin, body: #"{"url":"https://hooks.example.com/\#(index)","events":["request.failed"]}"#)
                #expect(created.status == .created)
            }
            let refused = try await client.send(
                .post, "\(base)/webhooks", headers: admin, body: #"{"url":"https://hooks.example.com/x","events":["request.failed"]}"#)
            refused.expectProblem(.conflict)
            #expect(try await harness.count("webhook_endpoints", company: tenant.id) == WebhookEndpoint.maximumPerCompany)
        }
    }
}
