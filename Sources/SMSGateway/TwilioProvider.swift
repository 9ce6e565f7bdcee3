import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// Sends through Twilio's Messages API (or anything speaking it, such as the tests' fake
/// gateway): `POST {base}/2010-04-01/Accounts/{sid}/Messages.json`, form-encoded, HTTP
/// Basic auth; 201 with `{"sid", "status"}`, errors as `{"code", "message", "status"}`.
public struct TwilioProvider: SMSProvider {
    public struct Configuration: Sendable {
        public var apiBaseURL: String
        public var accountSID: String
        public var authToken: String
        /// The sender: our short code or number.
        public var from: String
        /// Where Twilio posts delivery statuses (`PUBLIC_BASE_URL` + `/webhooks/twilio/status`).
        public var statusCallback: String?
        /// Kept well under the worker's lease, so an attempt always ends before its lease does.
        public var timeout: Duration

        public init(
            apiBaseURL: String = "https://api.twilio.com", accountSID: String, authToken: String, from: String,
            statusCallback: String?, timeout: Duration = .seconds(15)
        ) {
            self.apiBaseURL = apiBaseURL
            self.accountSID = accountSID
            self.authToken = authToken
            self.from = from
            self.statusCallback = statusCallback
            self.timeout = timeout
        }
    }

    let configuration: Configuration
    let client: HTTPClient
    let logger: Logger

    public init(configuration: Configuration, client: HTTPClient, logger: Logger) {
        self.configuration = configuration
        self.client = client
        self.logger = logger
    }

    public func send(_ message: OutgoingSMS) async -> DeliveryAttempt {
        var fields = [("To", message.to), ("From", configuration.from), ("Body", message.body)]
        if let callback = configuration.statusCallback { fields.append(("StatusCallback", callback)) }
        return await post("Messages.json", fields)
    }

    /// A form to one of the account's resources (`Messages.json`, `Calls.json`); both answer
    /// `{"sid", "status"}` on success and errors alike.
    func post(_ resource: String, _ fields: [(String, String)]) async -> DeliveryAttempt {
        let base = configuration.apiBaseURL.hasSuffix("/") ? String(configuration.apiBaseURL.dropLast()) : configuration.apiBaseURL
        var request = HTTPClientRequest(url: "\(base)/2010-04-01/Accounts/\(configuration.accountSID)/\(resource)")
        request.method = .POST
        let credentials = Data("\(configuration.accountSID):\(configuration.authToken)".utf8).base64EncodedString()
        request.headers.add(name: "Authorization", value: "Basic \(credentials)")
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Accept", value: "application/json")
        request.body = .bytes(ByteBuffer(string: FormURLEncoding.encode(fields)))

        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await client.execute(request, timeout: .init(configuration.timeout))
            body = try await response.body.collect(upTo: 64 * 1024)
        } catch {
            return Self.classify(error)
        }
        return Self.classify(status: response.status.code, headers: response.headers, body: body)
    }

    static func classify(status: UInt, headers: HTTPHeaders, body: ByteBuffer) -> DeliveryAttempt {
        struct Accepted: Decodable { var sid: String }
        struct Failure: Decodable {
            var code: Int?
            var message: String?
        }
        let data = Data(body.readableBytesView)
        switch status {
        case 200..<300:
            guard let accepted = try? JSONDecoder().decode(Accepted.self, from: data), !accepted.sid.isEmpty else {
                // It answered success, so it took the message, but we cannot tell which:
                // not safe to resend.
                return .uncertain(reason: "success without a message sid")
            }
            return .accepted(providerMessageID: accepted.sid)
        case 429:
            let retryAfter = headers.first(name: "Retry-After").flatMap(Int.init).map { Duration.seconds($0) }
            return .retryable(reason: "rate limited (429)", retryAfter: retryAfter)
        case 500..<600:
            return .retryable(reason: "provider error (\(status))", retryAfter: nil)
        default:
            let failure = try? JSONDecoder().decode(Failure.self, from: data)
            // 21610: the recipient replied STOP at the provider.
            if failure?.code == 21610 { return .optedOut }
            let code = failure?.code.map { " \($0)" } ?? ""
            return .permanent(reason: "refused (\(status)\(code))")
        }
    }

    /// Failures to connect mean nothing reached the provider; anything later might have.
    static func classify(_ error: any Error) -> DeliveryAttempt {
        switch error {
        case let error as HTTPClientError
        where error == .connectTimeout || error == .tlsHandshakeTimeout || error == .invalidURL
            || error == .emptyHost || error == .alreadyShutdown:
            return .retryable(reason: "cannot connect (\(error))", retryAfter: nil)
        case is NIOConnectionError:
            return .retryable(reason: "cannot connect", retryAfter: nil)
        case let error as IOError where error.errnoCode == ECONNREFUSED || error.errnoCode == ENETUNREACH || error.errnoCode == EHOSTUNREACH:
            return .retryable(reason: "cannot connect (\(error.errnoCode))", retryAfter: nil)
        case is ChannelError:
            if case ChannelError.connectTimeout = error { return .retryable(reason: "connect timeout", retryAfter: nil) }
            return .uncertain(reason: "connection failed after sending (\(error))")
        default:
            return .uncertain(reason: "no answer from the provider (\(error))")
        }
    }
}
