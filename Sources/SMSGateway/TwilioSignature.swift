import Crypto
import Foundation

/// Twilio's webhook signature (`X-Twilio-Signature`): base64 of HMAC-SHA1, keyed with the
/// account's auth token, over the full URL followed by each POST parameter's name and
/// value, sorted by name.
public enum TwilioSignature {
    public static func sign(url: String, parameters: [(String, String)], authToken: String) -> String {
        var data = url
        for (key, value) in parameters.sorted(by: { $0.0 == $1.0 ? $0.1 < $1.1 : $0.0 < $1.0 }) {
            data += key + value
        }
        let mac = HMAC<Insecure.SHA1>.authenticationCode(for: Data(data.utf8), using: SymmetricKey(data: Data(authToken.utf8)))
        return Data(mac).base64EncodedString()
    }

    /// Whether `signature` is right for this request, compared in constant time.
    public static func isValid(signature: String, url: String, parameters: [(String, String)], authToken: String) -> Bool {
        let expected = Array(sign(url: url, parameters: parameters, authToken: authToken).utf8)
        let presented = Array(signature.utf8)
        guard expected.count == presented.count else { return false }
        var difference: UInt8 = 0
        for (a, b) in zip(expected, presented) { difference |= a ^ b }
        return difference == 0
    }
}
