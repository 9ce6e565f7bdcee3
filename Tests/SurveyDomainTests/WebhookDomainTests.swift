import Foundation
import SurveyDomain
import Testing

@Suite struct WebhookDomainTests {
    /// The Standard Webhooks specification's own example, also what its reference library
    /// (`standardwebhooks` on PyPI) computes for it.
    @Test func signsAsTheSpecificationDoes() throws {
        let secret = try #require(WebhookSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
        let header = WebhookSignature.header(
            id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: Array(#"{"test": 2432232314}"#.utf8),
            secrets: [secret])
        #expect(header == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        // Two secrets while a rotation is honoured: one signature each, space-separated.
        let rotated = WebhookSignature.header(id: "msg_1", timestamp: 1, body: [], secrets: [secret, WebhookSecret.generate()])
        #expect(rotated.split(separator: " ").count == 2 && rotated.split(separator: " ").allSatisfy { $0.hasPrefix("v1,") })
    }

    @Test func secretsAreWellFormedAndNeverPrinted() throws {
        let secret = WebhookSecret.generate()
        #expect(secret.text.hasPrefix("whsec_") && secret.key.count == 32)
        #expect(WebhookSecret(secret.text) == secret)
        #expect("\(secret)" == "whsec_…")
        #expect(WebhookSecret("whsec_" + Data(repeating: 1, count: 16).base64EncodedString()) == nil, "too short")
        #expect(WebhookSecret("wh_" + Data(repeating: 1, count: 32).base64EncodedString()) == nil)
        #expect(WebhookSecret.generate() != secret)
    }

    func v4(_ text: String) -> [UInt8] { text.split(separator: ".").map { UInt8($0)! } }

    func v6(_ text: String) -> [UInt8] {
        var address = in6_addr()
        precondition(inet_pton(AF_INET6, text, &address) == 1, text)
        return withUnsafeBytes(of: &address) { Array($0) }
    }

    @Test func onlyPublicAddressesAreReachable() {
        for refused in [
            "0.0.0.0", "10.1.2.3", "100.64.0.1", "100.127.255.254", "127.0.0.1", "169.254.169.254", "172.16.0.1",
            "172.31.255.255", "192.0.0.8", "192.0.2.1", "192.168.1.1", "198.18.0.1", "198.51.100.7", "203.0.113.9",
            "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
        ] {
            #expect(!WebhookDestinationPolicy.isPublic(v4(refused)), "\(refused)")
        }
        for allowed in ["8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.1", "172.15.0.1", "172.32.0.1", "193.0.0.1", "52.95.110.1"] {
            #expect(WebhookDestinationPolicy.isPublic(v4(allowed)), "\(allowed)")
        }
        for refused in [
            "::", "::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1", "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::", "2002:c0a8:101::1", "fc00::1", "fd12:3456::1", "fe80::1", "fec0::1", "ff02::1", "2001:db8::1",
            "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "100::1", "3fff::1".replacingOccurrences(of: "3fff", with: "4000"),
        ] {
            #expect(!WebhookDestinationPolicy.isPublic(v6(refused)), "\(refused)")
        }
        for allowed in ["2606:4700:4700::1111", "2a00:1450:4007:80f::200e", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:0808:0808::1"] {
            #expect(WebhookDestinationPolicy.isPublic(v6(allowed)), "\(allowed)")
        }
        #expect(!WebhookDestinationPolicy.isPublic([1, 2, 3]), "neither family")
    }
}

@Suite struct WebhookRetryScheduleTests {
    @Test func backsOffForMoreThanThreeDaysWithJitter() {
        let schedule = WebhookRetrySchedule()
        #expect(WebhookRetrySchedule.shortestSpan > .seconds(3 * 86_400), "\(WebhookRetrySchedule.shortestSpan)")
        #expect(schedule.delay(afterAttempt: 1, unit: 0.5) == .seconds(5))
        #expect(schedule.delay(afterAttempt: 1, unit: 0) == .seconds(4))
        #expect(schedule.delay(afterAttempt: 1, unit: 1) == .seconds(6))
        let delays = (1...WebhookRetrySchedule.standard.count).compactMap { schedule.delay(afterAttempt: $0, unit: 0.5) }
        #expect(delays == WebhookRetrySchedule.standard)
        #expect(zip(delays, delays.dropFirst()).allSatisfy { $0 <= $1 }, "never shorter than the step before")
        #expect(schedule.delay(afterAttempt: WebhookRetrySchedule.standard.count + 1, unit: 0.5) == nil, "then it is given up")
        #expect(schedule.delay(afterAttempt: 0, unit: 0.5) == nil)
    }

    @Test func retryAfterIsHonouredWhenLongerUpToADay() {
        let schedule = WebhookRetrySchedule()
        #expect(schedule.delay(afterAttempt: 1, retryAfter: .seconds(120), unit: 0.5) == .seconds(120))
        #expect(schedule.delay(afterAttempt: 3, retryAfter: .seconds(1), unit: 0.5) == .seconds(1800), "a shorter one is not")
        #expect(schedule.delay(afterAttempt: 1, retryAfter: .seconds(10 * 86_400), unit: 0.5) == .seconds(86_400))
    }
}

@Suite struct WebhookURLTests {
    func refusal(_ text: String, allowPrivate: Bool = false) -> WebhookURLError? {
        if case .failure(let error) = WebhookURL.parse(text, allowPrivate: allowPrivate) { return error }
        return nil
    }

    @Test func publicHTTPSURLsAreAccepted() throws {
        let url = try WebhookURL.parse("https://hooks.example.com:8443/nps?src=x", allowPrivate: false).get()
        #expect(url.host == .name("hooks.example.com") && url.port == 8443 && url.isHTTPS)
        #expect(try WebhookURL.parse("https://8.8.8.8/h", allowPrivate: false).get().host == .address([8, 8, 8, 8]))
        #expect(try WebhookURL.parse("https://[2606:4700:4700::1111]/h", allowPrivate: false).get().port == 443)
        #expect(try WebhookURL.parse("https://Example.COM./x", allowPrivate: false).get().host == .name("example.com"))
    }

    @Test func everyKnownBypassIsRefused() {
        #expect(refusal("http://hooks.example.com/x") == .notHTTPS)
        #expect(refusal("ftp://hooks.example.com/x") == .notHTTPS)
        #expect(refusal("https://user:pass@hooks.example.com/x") == .credentials)
        #expect(refusal("https://hooks.example.com/x#frag") == .fragment)
        #expect(refusal("https://hooks.example.com/" + String(repeating: "a", count: 2100)) == .tooLong)
        for text in [
            "https://127.0.0.1/x", "https://10.0.0.5/x", "https://169.254.169.254/latest/meta-data", "https://[::1]/x",
            "https://[::ffff:127.0.0.1]/x", "https://[fe80::1]/x", "https://[fd00::1]/x", "https://0.0.0.0/x",
            "https://localhost/x", "https://api.localhost/x", "https://printer.local/x", "https://metadata.google.internal/x",
            "https://intranet/x", "https://100.64.1.1/x",
        ] {
            #expect(refusal(text) == .privateAddress, "\(text)")
        }
        // Addresses in disguise are not names either.
        for text in ["https://127.1/x", "https://2130706433/x", "https://0x7f.0.0.1/x", "https://017700000001/x", "https:///x", "nonsense"] {
            #expect(refusal(text) == .malformed, "\(text)")
        }
    }

    @Test func theOperatorMayAllowPrivateURLsForDevelopment() throws {
        #expect(try WebhookURL.parse("http://127.0.0.1:9000/h", allowPrivate: true).get().port == 9000)
        #expect(try WebhookURL.parse("http://localhost/h", allowPrivate: true).get().host == .name("localhost"))
        #expect(refusal("ftp://127.0.0.1/h", allowPrivate: true) == .notHTTPS)
    }
}
