import SMSGateway
import Testing

@Suite struct TwilioSignatureTests {
    /// The worked example of Twilio's "Webhooks security" guide: a known answer, so the
    /// signing is checked against Twilio itself rather than against our own reading of it.
    static let publishedURL = "https://mycompany.com/myapp.php?foo=1&bar=2"
    static let publishedParameters = [
        ("CallSid", "CA1234567890ABCDE"), ("Caller", "+12349013030"), ("Digits", "1234"), ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]

    @Test func twiliosPublishedVector() {
        #expect(TwilioSignature.sign(url: Self.publishedURL, parameters: Self.publishedParameters, authToken: "12345")
            == "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
        // The order parameters arrive in does not matter: they are sorted.
        #expect(TwilioSignature.isValid(
            signature: "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", url: Self.publishedURL, parameters: Self.publishedParameters.reversed(),
            authToken: "12345"))
    }

    @Test(arguments: [
        "", "0/KCTR6DLpKmkAf8muzZqo1nDgQ", "0/KCTR6DLpKmkAf8muzZqo1nDgQ==", "1/KCTR6DLpKmkAf8muzZqo1nDgQ=", "not base64!",
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ=0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
    ])
    func refusesAnyOtherSignature(_ signature: String) {
        #expect(!TwilioSignature.isValid(
            signature: signature, url: Self.publishedURL, parameters: Self.publishedParameters, authToken: "12345"))
    }

    @Test func refusesAChangedParameterURLOrToken() {
        let good = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        var tampered = Self.publishedParameters
        tampered[2].1 = "9999"
        #expect(!TwilioSignature.isValid(signature: good, url: Self.publishedURL, parameters: tampered, authToken: "12345"))
        #expect(!TwilioSignature.isValid(
            signature: good, url: "https://mycompany.com/myapp.php?foo=1&bar=3", parameters: Self.publishedParameters,
            authToken: "12345"))
        #expect(!TwilioSignature.isValid(
            signature: good, url: Self.publishedURL, parameters: Self.publishedParameters, authToken: "54321"))
    }
}
