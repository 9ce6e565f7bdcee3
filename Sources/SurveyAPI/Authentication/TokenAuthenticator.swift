import Foundation
import SurveyDomain
import SurveyStorage
import Synchronization

/// Resolves presented tokens to who they are, from a per-replica cache when it can be
/// trusted, else from the database.
///
/// The cache is trusted only while `TokenChangeListener` holds a LISTEN on
/// `api_token_changes`: a revocation committed on any replica is then announced here and
/// the token dropped, before the revoking request has even answered. The listener proves
/// its connection alive with a round trip every few seconds, and each proof extends the
/// trust for a short while only (`trust(until:)`): when the connection is lost, or merely
/// stops answering, the trust lapses by itself, the cache is not used, and every request
/// asks the database again until the listener is back; the announcements missed in between
/// cannot matter, since the cache starts empty again. Entries also expire after
/// `lifetime`, which bounds how stale `last_used_at` gets.
public final class TokenAuthenticator: Sendable {
    private struct Entry {
        var identity: TokenIdentity
        var expires: ContinuousClock.Instant
    }

    private struct State {
        mutating func forgetAll() {
            generation &+= 1
            entries.removeAll(keepingCapacity: true)
            hashes.removeAll(keepingCapacity: true)
        }

        var entries: [Data: Entry] = [:]
        var hashes: [TokenID: Data] = [:]
        /// Until when announcements are known to be received; nothing is cached or served
        /// from the cache after it.
        var trustedUntil: ContinuousClock.Instant?

        func isTrusted(at now: ContinuousClock.Instant) -> Bool { trustedUntil.map { now < $0 } ?? false }
        /// Bumped by every invalidation, so that a lookup that began before one does not
        /// cache what it read.
        var generation = 0
    }

    private let companies: CompanyRepository
    private let lifetime: Duration
    private let capacity: Int
    private let state = Mutex(State())
    private let clock = ContinuousClock()

    public init(companies: CompanyRepository, lifetime: Duration = .seconds(60), capacity: Int = 100_000) {
        self.companies = companies
        self.lifetime = lifetime
        self.capacity = capacity
    }

    /// Who `token` is, or `nil` when it is malformed, unknown or revoked.
    public func identity(of token: APIToken) async throws -> TokenIdentity? {
        guard token.isWellFormed else { return nil }
        let hash = token.hash
        let (cached, generation) = state.withLock { state -> (TokenIdentity?, Int) in
            let now = clock.now
            guard state.isTrusted(at: now), let entry = state.entries[hash], entry.expires > now else { return (nil, state.generation) }
            return (entry.identity, state.generation)
        }
        if let cached { return cached }
        guard let identity = try await companies.authenticate(hash: hash) else { return nil }
        state.withLock { state in
            guard state.isTrusted(at: clock.now), state.generation == generation else { return }
            if state.entries.count >= capacity { state.forgetAll() }
            state.entries[hash] = Entry(identity: identity, expires: clock.now + lifetime)
            state.hashes[identity.token] = hash
        }
        return identity
    }

    /// Whether `token` is known valid without asking the database (a cached, live entry).
    public func isKnown(_ token: APIToken) -> Bool {
        guard token.isWellFormed else { return false }
        let hash = token.hash
        return state.withLock { state in
            let now = clock.now
            return state.isTrusted(at: now) && state.entries[hash].map { $0.expires > now } ?? false
        }
    }

    /// A token was revoked, deleted or changed: forget it.
    func invalidate(_ token: TokenID) {
        state.withLock { state in
            state.generation &+= 1
            if let hash = state.hashes.removeValue(forKey: token) { state.entries.removeValue(forKey: hash) }
        }
    }

    /// Every announcement made before now has been received: the cache may be trusted
    /// until `until`. If the trust had lapsed, the cache starts empty: whatever it held may
    /// have been revoked unannounced meanwhile.
    func trust(until: ContinuousClock.Instant) {
        state.withLock { state in
            if !state.isTrusted(at: clock.now) { state.forgetAll() }
            state.trustedUntil = until
        }
    }

    /// Announcements are no longer received: the cache is dropped.
    func distrust() {
        state.withLock { state in
            state.trustedUntil = nil
            state.forgetAll()
        }
    }

    var cachedCount: Int { state.withLock { $0.entries.count } }
}
