import Foundation
import SurveyDomain
import SurveyStorage
import Synchronization

/// Resolves presented tokens to who they are, from a per-replica cache when it can be
/// trusted, else from the database.
///
/// The cache is trusted only while `TokenChangeListener` holds a LISTEN on
/// `api_token_changes`: a revocation committed on any replica is then announced here and
/// the token dropped, before the revoking request has even answered. When the listening
/// connection is lost the whole cache is dropped and every request asks the database
/// again until it is back; the announcements missed in between cannot matter. Entries
/// also expire after `lifetime`, which bounds how stale `last_used_at` gets.
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
        /// Whether announcements are being received; nothing is cached otherwise.
        var listening = false
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
            guard let entry = state.entries[hash], entry.expires > clock.now else { return (nil, state.generation) }
            return (entry.identity, state.generation)
        }
        if let cached { return cached }
        guard let identity = try await companies.authenticate(hash: hash) else { return nil }
        state.withLock { state in
            guard state.listening, state.generation == generation else { return }
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
        return state.withLock { state in state.entries[hash].map { $0.expires > clock.now } ?? false }
    }

    /// A token was revoked, deleted or changed: forget it.
    func invalidate(_ token: TokenID) {
        state.withLock { state in
            state.generation &+= 1
            if let hash = state.hashes.removeValue(forKey: token) { state.entries.removeValue(forKey: hash) }
        }
    }

    /// Announcements are (again, or no longer) being received. Either way the cache starts
    /// empty: whatever it held may have been revoked unannounced.
    func setListening(_ listening: Bool) {
        state.withLock { state in
            state.listening = listening
            state.forgetAll()
        }
    }

    var cachedCount: Int { state.withLock { $0.entries.count } }
}
