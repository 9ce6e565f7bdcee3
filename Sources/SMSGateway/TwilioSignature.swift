import Crypto
import Foundation

/// Twilio's webhook signature (`X-Twilio-Signature`): base64 of HMAC-SHA1, keyed with the
/// account's auth token, over the full URL followed by each POST parameter's name and
/// value, sorted by name. The names and values are joined with nothing between them, so
/// a valid signature alone does not pin the parameters down: `TwilioWebhook` checks them.
public enum TwilioSignature {
    public static func sign(url: String, parameters: [(String, String)], authToken: String) -> String {
        Data(HMAC<Insecure.SHA1>.authenticationCode(for: signedData(url: url, parameters: parameters), using: key(authToken)))
            .base64EncodedString()
    }

    /// Whether `signature` is right for this request, compared in constant time by
    /// swift-crypto (the presented value is decoded, never compared as text).
    public static func isValid(signature: String, url: String, parameters: [(String, String)], authToken: String) -> Bool {
        // Only the canonical encoding: Foundation's decoder tolerates extra padding.
        guard let presented = Data(base64Encoded: signature), presented.count == Insecure.SHA1.byteCount,
            presented.base64EncodedString() == signature
        else { return false }
        return HMAC<Insecure.SHA1>.isValidAuthenticationCode(
            presented, authenticating: signedData(url: url, parameters: parameters), using: key(authToken))
    }

    static func signedData(url: String, parameters: [(String, String)]) -> Data {
        var data = url
        for (key, value) in parameters.sorted(by: { $0.0 == $1.0 ? $0.1 < $1.1 : $0.0 < $1.0 }) {
            data += key + value
        }
        return Data(data.utf8)
    }

    static func key(_ authToken: String) -> SymmetricKey { SymmetricKey(data: Data(authToken.utf8)) }
}
