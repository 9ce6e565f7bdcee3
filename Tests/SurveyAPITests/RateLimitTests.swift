import APITestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Postgres
import SurveyAPI
import SurveyDomain
import SurveyStorage
import TestSupport
import Testing

/// Per-token rate limits and failed-authentication limits, whose state is in PostgreSQL so
/// that they hold across replicas.
@Suite struct RateLimitTests {
    let harness: Harness
    init() async throws { harness = try await Harness() }

    /// A replica: its own router and in-memory state, the shared database.
    func replica(_ limits: APIConfiguration.Limits) -> some ApplicationProtocol {
        Application(
            router: buildRouter(configuration: Harness.configuration(limits: limits), database: harness.database))
    }

    @Test func aTokenOverItsRateGets429WithRetryAfter() async throws {
        let tenant = try await harness.company()
        let other = try await harness.company()
        // One token a minute: the first three calls cannot refill the bucket, however slow
        // a loaded machine makes them (at 0.2/s they once took over 5 s and one came back).
        let limits = APIConfiguration.Limits(perToken: RateLimit(ratePerSecond: 1.0 / 60, burst: 3))
        try await replica(limits).testContract { client in
            for _ in 0..<3 {
                #expect(try await client.send(.get, "\(base)/surveys", headers: tenant.headers).status == .ok)
            }
            let limited = try await client.send(.get, "\(base)/surveys", headers: tenant.headers)
            limited.expectProblem(.tooManyRequests)
            #expect(limited.object["type"] as? String == "/problems/rate-limited")
            let retryAfter = try #require(limited.headers[.retryAfter].flatMap(Int.init))
            #expect((1...60).contains(retryAfter), "one token refills in 60 s")
            // Another token has a bucket of its own.
            #expect(try await client.send(.get, "\(base)/surveys", headers: other.headers).status == .ok)
        }
    }

    /// Issue 12: ten tokens of one company got ten times the limit.
    @Test func aCompanysTokensShareItsLimit() async throws {
        let tenant = try await harness.company()
        var more: [HTTPFields] = []
        for _ in 0..<9 { more.append(try await harness.token(for: tenant)) }
        let tokens = [tenant.headers] + more
        let limits = APIConfiguration.Limits(
            perToken: RateLimit(ratePerSecond: 0.1, burst: 5), perCompany: RateLimit(ratePerSecond: 0.1, burst: 12))
        try await replica(limits).testContract { client in
            var statuses: [Int] = []
            for headers in tokens {
                for _ in 0..<3 { statuses.append(Int(try await client.send(.get, "\(base)/surveys", headers: headers).status.code)) }
            }
            #expect(statuses.filter { $0 == 200 }.count == 12, "\(statuses)")
            let limited = try await client.send(.get, "\(base)/surveys", headers: tokens[9])
            limited.expectProblem(.tooManyRequests)
            #expect((limited.object["detail"] as? String)?.contains("company") == true)
            // Another company is not held back.
            let other = try await harness.company()
            #expect(try await client.send(.get, "\(base)/surveys", headers: other.headers).status == .ok)
        }
    }

    /// The operator sets one company's own limit (admin API); `null` returns it to the default.
    @Test func theAdminSetsACompanysOwnLimit() async throws {
        let tenant = try await harness.company()
        let limits = APIConfiguration.Limits(
            perToken: RateLimit(ratePerSecond: 1000, burst: 1000), perCompany: RateLimit(ratePerSecond: 1000, burst: 1000))
        let admin: HTTPFields = [.authorization: "Bearer \(Harness.adminToken)", .contentType: "application/json"]
        try await replica(limits).testContract { client in
            let set = try await client.send(
                .patch, "/admin/companies/\(tenant.id)", headers: admin, body: #"{"requestRateLimit":{"perSecond":0.1,"burst":2}}"#)
            #expect(set.status == .ok)
            #expect(set.text.contains(#""requestRateLimit":{"perSecond":0.1,"burst":2}"#), "\(set.text)")
            let bad = try await client.send(
                .patch, "/admin/companies/\(tenant.id)", headers: admin, body: #"{"requestRateLimit":{"perSecond":0,"burst":2.5,"x":1}}"#)
            bad.expectProblem(.badRequest)
            // The fuzzer's find: a null half was taken for "no change".
            let half = try await client.send(
                .patch, "/admin/companies/\(tenant.id)", headers: admin, body: #"{"requestRateLimit":{"perSecond":0.5,"burst":null}}"#)
            half.expectProblem(.badRequest)
            #expect(half.errorFields == ["requestRateLimit.burst"])
            #expect(bad.errorFields.sorted() == ["requestRateLimit.burst", "requestRateLimit.perSecond", "requestRateLimit.x"])
            // A new token is looked up with the company's limit.
            let headers = try await harness.token(for: tenant)
            var statuses: [Int] = []
            for _ in 0..<4 { statuses.append(Int(try await client.send(.get, "\(base)/surveys", headers: headers).status.code)) }
            #expect(statuses == [200, 200, 429, 429], "\(statuses)")
            let reset = try await client.send(.patch, "/admin/companies/\(tenant.id)", headers: admin, body: #"{"requestRateLimit":null}"#)
            #expect(reset.text.contains(#""requestRateLimit":null"#))
        }
    }

    @Test func theLimitHoldsAcrossReplicas() async throws {
        let tenant = try await harness.company()
        // One token a minute: slow requests on a loaded machine must not refill the bucket.
        let limits = APIConfiguration.Limits(perToken: RateLimit(ratePerSecond: 1.0 / 60, burst: 4))
        let first = replica(limits)
        let second = replica(limits)
        let statuses = try await first.testContract { one in
            try await second.testContract { two in
                var statuses: [Int] = []
                for index in 0..<8 {
                    let client = index.isMultiple(of: 2) ? one : two
                    statuses.append(Int(try await client.send(.get, "\(base)/surveys", headers: tenant.headers).status.code))
                }
                return statuses
            }
        }
        #expect(statuses.filter { $0 == 200 }.count == 4, "\(statuses)")
        #expect(statuses.filter { $0 == 429 }.count == 4, "\(statuses)")
    }

    @Test func failedAuthenticationsAreLimitedPerAddress() async throws {
        let tenant = try await harness.company()
        let limits = APIConfiguration.Limits(
            failedAuthentication: RateLimit(ratePerSecond: 1.0 / 60, burst: 3), trustForwardedFor: true)
        // Unique addresses, so no other test shares these buckets.
        let attacker = "198.51.100.\(UInt8.random(in: 1...254)), 10.\(UInt8.random(in: 0...255)).\(UInt8.random(in: 0...255)).1"
        let neighbour = "203.0.113.\(UInt8.random(in: 1...254)), 10.\(UInt8.random(in: 0...255)).\(UInt8.random(in: 0...255)).2"
        try await replica(limits).testContract { client in
            func get(_ token: String, from address: String) async throws -> TestResponse {
                try await client.send(
                    .get, "\(base)/surveys",
                    headers: [.authorization: "Bearer \(token)", HTTPField.Name("X-Forwarded-For")!: address])
            }
            let wrong = "nps_live_" + String(repeating: "x", count: 43)
            for _ in 0..<3 { try await get(wrong, from: attacker).expectProblem(.unauthorized) }
            let limited = try await get(wrong, from: attacker)
            limited.expectProblem(.tooManyRequests)
            #expect(limited.object["type"] as? String == "/problems/too-many-failed-authentications")
            #expect(try #require(limited.headers[.retryAfter].flatMap(Int.init)) > 1)
            // A valid token still passes from the blocked address (one client behind a shared
            // address must not lock out the others); wrong ones keep getting 429.
            #expect(try await get(tenant.token, from: attacker).status == .ok)
            try await get(wrong, from: attacker).expectProblem(.tooManyRequests)
            // Only the last X-Forwarded-For entry counts: the one the load balancer appended.
            #expect(try await get(tenant.token, from: neighbour).status == .ok)
            try await get(wrong, from: neighbour).expectProblem(.unauthorized)
        }
    }

    @Test func failedAdminAuthenticationsAreLimitedToo() async throws {
        let limits = APIConfiguration.Limits(
            failedAuthentication: RateLimit(ratePerSecond: 1.0 / 60, burst: 2), trustForwardedFor: true)
        let address = "192.0.2.\(UInt8.random(in: 1...254)), 10.1.\(UInt8.random(in: 0...255)).\(UInt8.random(in: 0...255))"
        try await replica(limits).testContract { client in
            func get(_ token: String) async throws -> TestResponse {
                try await client.send(
                    .get, "/admin/companies/1", headers: [.authorization: "Bearer \(token)", HTTPField.Name("X-Forwarded-For")!: address])
            }
            for _ in 0..<2 { try await get("guess").expectProblem(.unauthorized) }
            try await get("guess").expectProblem(.tooManyRequests)
            #expect(try await get(Harness.adminToken).status != .tooManyRequests, "the right admin token still passes")
        }
    }

    /// The bucket's own arithmetic runs in PostgreSQL, on its clock. Each assertion holds
    /// however slow the machine (it was made only when the first calls took under 450 ms).
    @Test func theSharedBucketRefillsAtItsRate() async throws {
        let repository = RateLimitRepository(database: harness.database)
        // A bucket that refills one token per 100 s: empty means empty for this whole test.
        let slow = "test:\(UInt64.random(in: 0...UInt64.max))"
        let emptied = ContinuousClock.now
        let first = try await repository.take(10, from: slow, rate: 0.01, burst: 5)
        #expect(first.granted == 5, "a new bucket is full, and grants at most the burst")
        let empty = try await repository.take(1, from: slow, rate: 0.01, burst: 5)
        let between = emptied.duration(to: .now)
        #expect(empty.granted == 0)
        // The next token is 100 s after the bucket was emptied, less what has refilled since
        // (a loaded machine once took more than 10 s between these two calls).
        #expect(empty.retryAfter > .seconds(100) - between - .seconds(1) && empty.retryAfter <= .seconds(100), "\(empty.retryAfter) after \(between)")
        // One that refills at 2/s, bounded both ways by the time that really elapsed.
        let fast = "test:\(UInt64.random(in: 0...UInt64.max))"
        let start = ContinuousClock.now
        #expect(try await repository.take(5, from: fast, rate: 2, burst: 5).granted == 5)
        try await Task.sleep(for: .milliseconds(1100))
        let refilled = try await repository.take(10, from: fast, rate: 2, burst: 5)
        let elapsed = start.duration(to: .now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        #expect(refilled.granted >= 2, "at least 1.1 s of refill at 2/s")
        #expect(refilled.granted <= min(5, Int(2 * seconds)), "no more than the time elapsed refilled")
    }

    /// The replica's side on a clock moved by hand: a lease's tokens last `leaseLifetime`
    /// of the limiter's clock, and a refused key stays refused, without asking the
    /// database, until its retry time on that clock.
    @Test func leasesExpireAndRefusalsLastOnTheLimitersClock() async throws {
        let clock = VirtualClock()
        let limiter = SharedRateLimiter(
            repository: RateLimitRepository(database: harness.database), leaseLifetime: .seconds(1), clock: clock,
            logger: TestDatabase.logger)
        func refreshed(_ key: String) async throws -> Date {
            try await harness.superuser().withConnection { connection in
                try await connection.query("SELECT refreshed_at FROM rate_limit_buckets WHERE bucket_key = \(key)").one().decode(Date.self)
            }
        }
        // Leases of 10 (a tenth of a second at 100/s).
        let leased = "test:\(UInt64.random(in: 0...UInt64.max))"
        let limit = RateLimit(ratePerSecond: 100, burst: 20)
        #expect(await limiter.acquire(leased, limit: limit) == .allowed)
        let first = try await refreshed(leased)
        for _ in 0..<9 { #expect(await limiter.acquire(leased, limit: limit) == .allowed) }
        #expect(try await refreshed(leased) == first, "the lease's ten tokens were spent without the database")
        #expect(await limiter.acquire(leased, limit: limit) == .allowed)
        let second = try await refreshed(leased)
        #expect(second > first, "an eleventh request takes a new lease")
        // Its nine unused tokens expire with it, a second later on the limiter's clock.
        clock.advance(by: .milliseconds(1001))
        #expect(await limiter.acquire(leased, limit: limit) == .allowed)
        #expect(try await refreshed(leased) > second, "an expired lease is not spent")

        // A bucket of 3 that refills once per 1000 s: three leases of one, then a refusal.
        let refusedKey = "test:\(UInt64.random(in: 0...UInt64.max))"
        let slow = RateLimit(ratePerSecond: 0.001, burst: 3)
        for _ in 0..<3 { #expect(await limiter.acquire(refusedKey, limit: slow) == .allowed) }
        let refused = await limiter.acquire(refusedKey, limit: slow)
        guard case .limited(let wait) = refused else {
            Issue.record("expected a refusal, got \(refused)")
            return
        }
        #expect(wait > .seconds(900))
        // Known without the database: the same wait, less the time moved.
        clock.advance(by: .seconds(100))
        #expect(limiter.blockedFor(refusedKey) == wait - .seconds(100))
        clock.advance(by: wait)
        #expect(limiter.blockedFor(refusedKey) == nil)
    }

    @Test func concurrentRequestsShareOneLease() async throws {
        let limiter = SharedRateLimiter(repository: RateLimitRepository(database: harness.database), logger: TestDatabase.logger)
        let key = "test:\(UInt64.random(in: 0...UInt64.max))"
        let limit = RateLimit(ratePerSecond: 100, burst: 30)  // leases of 10
        let allowed = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<30 { group.addTask { await limiter.acquire(key, limit: limit) == .allowed } }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        // Each lease is 10: requests racing for their own leases would empty the burst with
        // 3 leases and refuse most of the 30.
        #expect(allowed == 30, "30 concurrent requests fit the burst of 30: none may be refused for racing")
    }
}
