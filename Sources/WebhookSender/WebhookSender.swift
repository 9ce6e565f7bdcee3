import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import SurveyDomain
import Synchronization

/// One attempt to be made: the signed headers are computed from these at send time.
public struct WebhookMessage: Sendable {
    /// `webhook-id`: the same in every attempt of the event.
    public var id: String
    public var body: [UInt8]
    public var url: String
    /// The current secret first; a rotated-out one too while it is still honoured.
    public var secrets: [WebhookSecret]
    /// Whose connections these are: messages with the same key share an HTTP client and its
    /// connections, others never do (endpoints of two companies on one host included).
    public var connectionKey: String

    public init(id: String, body: [UInt8], url: String, secrets: [WebhookSecret], connectionKey: String = "") {
        self.id = id
        self.body = body
        self.url = url
        self.secrets = secrets
        self.connectionKey = connectionKey
    }
}

/// Posts webhook messages, signed as the Standard Webhooks specification says, to public
/// addresses only (OWASP API7:2023):
///
/// * the URL is checked again (`WebhookURL`), and a host name is resolved here and each of
///   its addresses checked; the HTTP client then connects to the checked address (its DNS
///   override), with the name kept for TLS (SNI and certificate), so a second DNS answer
///   (rebinding) is never used;
/// * redirects are not followed (a 3xx is a failed attempt);
/// * each attempt has `timeout` in all (connect, answer, and the excerpt of the body read);
///   at most `excerptLimit` bytes of the answer are read.
///
/// Each endpoint (`WebhookMessage.connectionKey`) gets a client, and so connections, of its
/// own, kept while in use and for `idleClientLifetime` after: an endpoint that hangs holds
/// its own connections, never another's, even on the same host.
public final class WebhookSender: Sendable {
    public struct Configuration: Sendable {
        /// The operator's `WEBHOOK_ALLOW_PRIVATE_URLS`: `http` and any address, for local
        /// development and the tests.
        public var allowPrivateAddresses = false
        public var timeout: Duration = .seconds(10)
        /// Connections one endpoint's client keeps (the worker's per-endpoint cap of attempts).
        public var connectionsPerEndpoint = 16
        /// Bytes of an answer read, and kept (as text) in the delivery log.
        public var excerptLimit = 256
        /// A host's checked addresses are used this long before it is resolved again.
        public var resolutionLifetime: Duration = .seconds(60)
        /// A host that did not resolve is not looked up again for this long.
        public var failedResolutionLifetime: Duration = .seconds(10)
        public var idleClientLifetime: Duration = .seconds(300)
        public var userAgent = "surveyd-webhooks/1"

        public init() {}
    }

    let configuration: Configuration
    let resolver: any HostResolver
    let eventLoopGroup: any EventLoopGroup
    let logger: Logger
    let clock = ContinuousClock()
    private let state = Mutex(State())

    private struct State {
        var clients: [String: Entry] = [:]
        var resolutions: [String: Resolution] = [:]
        var lastSweep: ContinuousClock.Instant?
        var closed = false
    }

    private struct Resolution {
        var lookup: Task<[[UInt8]], any Error>
        var until: ContinuousClock.Instant
    }

    private struct Entry {
        var client: HTTPClient
        var inUse = 0
        var lastUsed: ContinuousClock.Instant
    }

    public init(configuration: Configuration, resolver: any HostResolver, eventLoopGroup: any EventLoopGroup, logger: Logger) {
        self.configuration = configuration
        self.resolver = resolver
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    /// Makes one attempt; never throws: every failure is an outcome, recorded and retried.
    public func send(_ message: WebhookMessage) async -> WebhookAttemptResult {
        let startedAt = Date()
        let start = clock.now
        func failed(_ error: String) -> WebhookAttemptResult {
            WebhookAttemptResult(startedAt: startedAt, duration: clock.now - start, error: error)
        }
        let url: WebhookURL
        switch WebhookURL.parse(message.url, allowPrivate: configuration.allowPrivateAddresses) {
        case .success(let parsed): url = parsed
        case .failure(let error): return failed("url refused: \(error.message)")
        }
        let limit = configuration.excerptLimit
        let timeout = configuration.timeout
        do {
            // The deadline covers everything: resolving the name, connecting, the answer.
            let (status, headers, excerpt) = try await withThrowingTaskGroup(of: (UInt, HTTPHeaders, [UInt8])?.self) { group in
                group.addTask { try await self.post(message, to: url) }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let answered = first else { throw AttemptTimedOut() }
                return answered
            }
            guard (100...599).contains(status) else {
                return WebhookAttemptResult(startedAt: startedAt, duration: clock.now - start, error: "invalid HTTP status \(status)")
            }
            var result = WebhookAttemptResult(
                startedAt: startedAt, duration: clock.now - start, statusCode: Int(status),
                responseExcerpt: WebhookAttemptResult.excerpt(excerpt, limit: limit))
            if status == 429 || status == 503 { result.retryAfter = RetryAfter.parse(headers.first(name: "Retry-After"), now: Date()) }
            if (300..<400).contains(status) { result.error = "redirects are not followed" }
            return result
        } catch is AttemptTimedOut {
            return failed("no answer within \(timeout.components.seconds) s")
        } catch let error as DestinationRefused {
            return failed(error.description)
        } catch {
            return failed(Self.describe(error))
        }
    }

    /// Resolves and checks the host, then posts the signed message to the checked address
    /// and reads the start of the answer.
    private func post(_ message: WebhookMessage, to url: WebhookURL) async throws -> (UInt, HTTPHeaders, [UInt8]) {
        let target = try await self.target(for: url, connectionKey: message.connectionKey)
        guard let client = checkOut(target) else { throw DestinationRefused(description: "the sender is shutting down") }
        defer { checkIn(target) }
        // The canonical URL: its host is the name that was checked (see `target(for:)`).
        let response = try await client.execute(signedRequest(message, url: url.text), timeout: .init(configuration.timeout))
        let limit = configuration.excerptLimit
        var excerpt: [UInt8] = []
        for try await chunk in response.body {
            excerpt += chunk.readableBytesView.prefix(limit - excerpt.count)
            if excerpt.count >= limit { break }
        }
        return (response.status.code, response.headers, excerpt)
    }

    /// The POST, with the Standard Webhooks headers. The timestamp is the attempt's (a
    /// receiver refuses old ones), the id the event's.
    func signedRequest(_ message: WebhookMessage, url: String) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        let timestamp = Int64(Date().timeIntervalSince1970)
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: configuration.userAgent)
        request.headers.add(name: "webhook-id", value: message.id)
        request.headers.add(name: "webhook-timestamp", value: String(timestamp))
        request.headers.add(
            name: "webhook-signature",
            value: WebhookSignature.header(id: message.id, timestamp: timestamp, body: message.body, secrets: message.secrets))
        request.body = .bytes(ByteBuffer(bytes: message.body))
        return request
    }

    /// Closes every client; attempts after this fail. (Clients are made on first use, so a
    /// sender that never sent holds nothing to close.)
    public func shutdown() async {
        let clients = state.withLock { state in
            state.closed = true
            defer { state.clients = [:] }
            return state.clients.values.map(\.client)
        }
        for client in clients { try? await client.shutdown() }
    }

    // MARK: Where to connect

    struct Target: Hashable {
        /// The URL's host name, or nil when the URL names an address.
        var name: String?
        var address: String
        var connectionKey: String
        var key: String { "\(connectionKey)|\(name ?? "")|\(address)" }
    }

    struct DestinationRefused: Error, CustomStringConvertible {
        var description: String
    }

    struct AttemptTimedOut: Error {}

    func target(for url: WebhookURL, connectionKey: String) async throws -> Target {
        switch url.host {
        case .address(let address):
            // Checked by `WebhookURL.parse` (unless private addresses are allowed).
            return Target(name: nil, address: AddressText.format(address), connectionKey: connectionKey)
        case .name(let name):
            // The name the HTTP client will read from the URL must be the one checked here,
            // or its DNS override would miss and it would resolve the name itself.
            guard URL(string: url.text)?.host == name else {
                throw DestinationRefused(description: "the URL's host is not in canonical form; register it again")
            }
            let addresses = try await resolve(name)
            guard let first = addresses.first else { throw DestinationRefused(description: "\(name) has no address") }
            if !configuration.allowPrivateAddresses, let refused = addresses.first(where: { !WebhookDestinationPolicy.isPublic($0) }) {
                throw DestinationRefused(
                    description: "\(name) resolved to a non-public address (\(AddressText.format(refused))); not connected")
            }
            return Target(name: name, address: AddressText.format(first), connectionKey: connectionKey)
        }
    }

    /// The addresses of `name`: one look-up at a time per name (attempts to one host share
    /// it), kept `resolutionLifetime`, a failure only `failedResolutionLifetime`. Waiting
    /// for it ends when the attempt's deadline does, even if the look-up goes on.
    func resolve(_ name: String) async throws -> [[UInt8]] {
        let now = clock.now
        let lookup = state.withLock { state -> Task<[[UInt8]], any Error> in
            if let entry = state.resolutions[name], entry.until > now { return entry.lookup }
            let resolver = self.resolver
            let lookup = Task { try await resolver.addresses(of: name) }
            state.resolutions[name] = Resolution(lookup: lookup, until: now + configuration.resolutionLifetime)
            return lookup
        }
        do {
            return try await Self.value(of: lookup)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            let retryAt = clock.now + configuration.failedResolutionLifetime
            state.withLock { state in
                if let entry = state.resolutions[name], entry.lookup == lookup, entry.until > retryAt {
                    state.resolutions[name]?.until = retryAt
                }
            }
            throw DestinationRefused(description: "\(name) did not resolve")
        }
    }

    /// A task's value, or `CancellationError` as soon as the waiting task is cancelled (a
    /// task's own `value` waits for it to end, however long a blocked look-up takes).
    static func value<Value: Sendable>(of task: Task<Value, any Error>) async throws -> Value {
        let waiting = Waiting<Value>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                waiting.set(continuation)
                Task {
                    let result = await task.result
                    waiting.resume(with: result)
                }
                if Task.isCancelled { waiting.resume(with: .failure(CancellationError())) }
            }
        } onCancel: {
            waiting.resume(with: .failure(CancellationError()))
        }
    }

    /// A continuation resumed once, by whichever comes first.
    private final class Waiting<Value: Sendable>: Sendable {
        private let continuation = Mutex<CheckedContinuation<Value, any Error>?>(nil)
        func set(_ continuation: CheckedContinuation<Value, any Error>) { self.continuation.withLock { $0 = continuation } }
        func resume(with result: Result<Value, any Error>) { continuation.withLock { $0.take() }?.resume(with: result) }
    }

    private func checkOut(_ target: Target) -> HTTPClient? {
        let now = clock.now
        let (client, idle): (HTTPClient?, [HTTPClient]) = state.withLock { state in
            guard !state.closed else { return (nil, []) }
            var idle: [HTTPClient] = []
            if state.lastSweep.map({ now - $0 > .seconds(30) }) ?? true {
                state.lastSweep = now
                for (key, entry) in state.clients where entry.inUse == 0 && now - entry.lastUsed > configuration.idleClientLifetime {
                    idle.append(entry.client)
                    state.clients[key] = nil
                }
            }
            if state.clients[target.key] == nil {
                state.clients[target.key] = Entry(client: makeClient(for: target), lastUsed: now)
            }
            state.clients[target.key]!.inUse += 1
            state.clients[target.key]!.lastUsed = now
            return (state.clients[target.key]!.client, idle)
        }
        if !idle.isEmpty {
            Task { for client in idle { try? await client.shutdown() } }
        }
        return client
    }

    private func checkIn(_ target: Target) {
        let now = clock.now
        state.withLock { state in
            state.clients[target.key]?.inUse -= 1
            state.clients[target.key]?.lastUsed = now
        }
    }

    private func makeClient(for target: Target) -> HTTPClient {
        var pool = HTTPClient.Configuration.ConnectionPool(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: self.configuration.connectionsPerEndpoint)
        // A refused or failed connection is a failed attempt, at once: the retry schedule
        // decides when to try again, rather than the client retrying until the deadline
        // while the endpoint's slot is held.
        pool.retryConnectionEstablishment = false
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: TimeAmount(self.configuration.timeout)),
            connectionPool: pool,
            decompression: .disabled)
        if let name = target.name { configuration.dnsOverride = [name: target.address] }
        return HTTPClient(eventLoopGroupProvider: .shared(eventLoopGroup), configuration: configuration, backgroundActivityLogger: logger)
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return "could not connect (timed out)"
            case .remoteConnectionClosed: return "the connection was closed before an answer"
            case .deadlineExceeded, .readTimeout, .writeTimeout: return "no answer in time"
            case .cancelled: return "cancelled"
            default: break
            }
        }
        if let error = error as? IOError {
            switch error.errnoCode {
            case ECONNREFUSED: return "connection refused"
            case ECONNRESET: return "connection reset by the endpoint"
            default: return "network error: \(error.description)"
            }
        }
        let text = String(describing: error)
        if text.contains("connectionRefused") || text.contains("Connection refused") { return "connection refused" }
        return String(text.prefix(200))
    }
}

/// `Retry-After`: seconds, or an HTTP date.
enum RetryAfter {
    static func parse(_ value: String?, now: Date) -> Duration? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        if let seconds = Int64(value), seconds >= 0 { return .seconds(seconds) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: value) else { return nil }
        return .seconds(max(0, Int64(date.timeIntervalSince(now).rounded(.up))))
    }
}

/// As a service of its process: closes its clients at graceful shutdown.
extension WebhookSender: Service {
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }
}

extension WebhookSender {
    /// The API's and the worker's default: the system resolver, NIO's shared event loops.
    public convenience init(configuration: Configuration, logger: Logger) {
        self.init(
            configuration: configuration, resolver: SystemHostResolver(), eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
            logger: logger)
    }
}
