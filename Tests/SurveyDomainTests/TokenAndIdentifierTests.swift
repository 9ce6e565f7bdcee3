import Foundation
import SurveyDomain
import Testing

@Suite struct APITokenTests {
    @Test func generatedTokensAreLongRandomAndRecognisable() {
        let tokens = (0..<100).map { _ in APIToken.generate() }
        #expect(Set(tokens.map(\.secret)).count == 100)
        for token in tokens {
            #expect(token.secret.hasPrefix("nps_live_"))
            // 32 bytes of randomness: 43 base64url characters.
            #expect(token.secret.count == "nps_live_".count + 43)
            #expect(token.isWellFormed)
            #expect(token.hash.count == 32)
            #expect(!token.description.contains(token.secret))
        }
    }

    @Test func hashIsSHA256OfTheWholeToken() {
        // printf 'nps_live_x' | sha256sum
        let token = APIToken(secret: "nps_live_x")
        #expect(token.hash.map { String(format: "%02x", $0) }.joined()
            == "35015f337b20ee4defee88536a27bed05cecfaafd6a69650e01ca913057a913e")
    }

    @Test func malformedTokensAreRecognisedWithoutALookup() {
        #expect(!APIToken(secret: "").isWellFormed)
        #expect(!APIToken(secret: "nps_live_short").isWellFormed)
        #expect(!APIToken(secret: "sk_live_" + String(repeating: "a", count: 44)).isWellFormed)
        #expect(!APIToken(secret: "nps_live_" + String(repeating: "a", count: 42) + "!").isWellFormed)
    }

    @Test func constantTimeEqualsCompares() {
        #expect(constantTimeEquals("secret", "secret"))
        #expect(!constantTimeEquals("secret", "secreT"))
        #expect(!constantTimeEquals("secret", "secret2"))
        #expect(!constantTimeEquals("", "x"))
    }
}

@Suite struct IdentifierTests {
    @Test func parsesOnlyPositiveDecimalIntegers() {
        #expect(SurveyID(parsing: "42") == SurveyID(42))
        for bad in ["", "0", "-1", "1.0", "abc", "1e3", "٣", "99999999999999999999", " 1", "0x10"] {
            #expect(SurveyID(parsing: bad[...]) == nil, "\(bad)")
        }
    }

    @Test func encodesAsAPlainNumber() throws {
        let data = try JSONEncoder().encode([SurveyID(8)])
        #expect(String(decoding: data, as: UTF8.self) == "[8]")
    }
}

@Suite struct TimestampTests {
    @Test func formatsISO8601WithMillisecondsAndOffset() {
        #expect(Timestamp.format(Date(timeIntervalSince1970: 1_795_951_331.5)) == "2026-11-29T11:22:11.500+00:00")
        #expect(Timestamp.format(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000+00:00")
        #expect(Timestamp.format(Date(timeIntervalSince1970: -0.001)) == "1969-12-31T23:59:59.999+00:00")
        #expect(Timestamp.format(Date(timeIntervalSince1970: 951_782_400)) == "2000-02-29T00:00:00.000+00:00")
    }
}
