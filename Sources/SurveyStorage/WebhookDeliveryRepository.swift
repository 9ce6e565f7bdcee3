import Foundation
import Postgres
import SurveyDomain

/// The outbox's delivery side: claiming due deliveries (the worker, across companies),
/// claiming one (the API's `/test` and `/retry`, within one), recording attempts, the
/// delivery log, and the sweep that emits `request.expired`.
public struct WebhookDeliveryRepository: Sendable {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// A delivery held for one attempt: what to send and where.
    public struct Claimed: Sendable {
        public var company: CompanyID
        public var id: WebhookDeliveryID
        public var endpoint: WebhookEndpointID
        public var event: Int64
        public var leaseID: Int64
        /// Attempts recorded before this one.
        public var attempts: Int
        public var url: String
        /// The current secret first, then the rotated-out one while it still signs.
        public var secrets: [WebhookSecret]
        public var body: String
        /// Where it stood when claimed: a manual replay of an ended delivery is not retried,
        /// and one that had succeeded stays succeeded whatever the replay gets.
        public var state: WebhookDeliveryState
        public var wasPending: Bool { state == .pending }

        public var messageID: String { WebhookMessageID.text(event: event) }
        /// The endpoint's own connections (see `WebhookMessage.connectionKey`).
        public var connectionKey: String { "\(company.rawValue)/\(endpoint.rawValue)" }
    }

    /// One attempt's outcome, and what follows it.
    public struct Attempt: Sendable {
        public var delivery: Claimed
        public var startedAt: Date
        public var duration: Duration
        public var httpStatus: Int?
        public var error: String?
        public var responseExcerpt: String?
        public var next: WebhookNextStep
        public var gone: Bool

        public init(
            delivery: Claimed, startedAt: Date, duration: Duration, httpStatus: Int?, error: String?, responseExcerpt: String?,
            next: WebhookNextStep, gone: Bool
        ) {
            self.delivery = delivery
            self.startedAt = startedAt
            self.duration = duration
            self.httpStatus = httpStatus
            self.error = error
            self.responseExcerpt = responseExcerpt
            self.next = next
            self.gone = gone
        }
    }

    /// Decides what follows `result` (the retry schedule, `unit` its jitter) and makes the record of it.
    public static func attempt(
        _ delivery: Claimed, result: WebhookAttemptResult, schedule: WebhookRetrySchedule = WebhookRetrySchedule(), unit: Double
    ) -> Attempt {
        let next = schedule.next(
            afterAttempt: delivery.attempts + 1, succeeded: result.succeeded, gone: result.gone, retryAfter: result.retryAfter,
            retrying: delivery.wasPending, unit: unit)
        return Attempt(
            delivery: delivery, startedAt: result.startedAt, duration: result.duration, httpStatus: result.statusCode,
            error: result.error, responseExcerpt: result.responseExcerpt, next: next, gone: result.gone)
    }

    /// An endpoint that an outcome just disabled.
    public struct Disabled: Sendable, Equatable {
        public var company: CompanyID
        public var endpoint: WebhookEndpointID
        public var reason: String
    }

    // MARK: Claims

    /// Up to `limit` due deliveries, leased for `lease`: at most `perEndpoint` attempts
    /// under way at once at any endpoint, and about `perCompany` at any company, counting
    /// every worker's (`claim_webhook_deliveries` in sql/0007). Endpoints are taken in
    /// random order and skipped while another worker claims theirs, so a backlog at one
    /// neither blocks nor starves another's.
    public func claim(limit: Int, perEndpoint: Int, perCompany: Int, lease: Duration) async throws -> [Claimed] {
        let leaseID = Int64.random(in: 1...Int64.max)
        return try await database.client.withConnection { connection in
            try await connection.query(
                """
                SELECT company_id, delivery_id, endpoint_id, event_id, lease_id, attempts, url, secret, previous_secret, body, 'pending'
                  FROM claim_webhook_deliveries(\(limit), \(perEndpoint), \(perCompany), \(leaseID), \(Int(lease.seconds)))
                """
            ).map(Self.claimed)
        }
    }

    /// Holds one delivery of `endpoint` for an attempt now (`/retry`), whatever its state,
    /// unless an attempt of it is under way.
    public func claim(
        _ delivery: WebhookDeliveryID, endpoint: WebhookEndpointID, lease: Duration, company: CompanyID
    ) async throws -> Claimed {
        let leaseID = Int64.random(in: 1...Int64.max)
        return try await database.withTenant(company) { connection in
            let row = try await connection.query(
                """
                UPDATE webhook_deliveries AS d
                   SET lease_id = \(leaseID), leased_until = now() + make_interval(secs => \(lease.seconds))
                  FROM (SELECT e.url, e.secret,
                               CASE WHEN e.previous_secret_until > now() THEN e.previous_secret END AS previous_secret
                          FROM webhook_endpoints AS e WHERE e.company_id = \(company) AND e.endpoint_id = \(endpoint)) AS p,
                       webhook_events AS v
                 WHERE d.company_id = \(company) AND d.endpoint_id = \(endpoint) AND d.delivery_id = \(delivery)
                   AND (d.leased_until IS NULL OR d.leased_until <= now())
                   AND v.company_id = d.company_id AND v.event_id = d.event_id
                RETURNING \(fragment: Self.claimedColumns)
                """
            ).single
            if let row { return try Self.claimed(row) }
            let exists = try await connection.query(
                """
                SELECT 1 FROM webhook_deliveries
                 WHERE company_id = \(company) AND endpoint_id = \(endpoint) AND delivery_id = \(delivery)
                """)
            throw exists.isEmpty ? StorageError.notFound : StorageError.deliveryInProgress
        }
    }

    /// A `ping` event for one endpoint (`/test`), its delivery already held for the attempt.
    /// It is written as `failed` until its attempt is recorded: no worker ever claims it (a
    /// ping is not retried), and one whose attempt never ended was not delivered.
    public func ping(_ endpoint: WebhookEndpointID, lease: Duration, company: CompanyID) async throws -> Claimed {
        let leaseID = Int64.random(in: 1...Int64.max)
        return try await database.withTenant(company) { connection in
            let row = try await connection.query(
                """
                WITH endpoint AS (
                    SELECT e.company_id, e.endpoint_id, e.url, e.secret,
                           CASE WHEN e.previous_secret_until > now() THEN e.previous_secret END AS previous_secret
                      FROM webhook_endpoints AS e WHERE e.company_id = \(company) AND e.endpoint_id = \(endpoint)
                ), event AS (
                    INSERT INTO webhook_events (company_id, type, body)
                    SELECT company_id, 'ping',
                           json_build_object('type', 'ping', 'timestamp', webhook_time(now()),
                                             'data', json_build_object('endpointId', endpoint_id))::text
                      FROM endpoint
                    RETURNING company_id, event_id, body
                ), delivery AS (
                    INSERT INTO webhook_deliveries (company_id, endpoint_id, event_id, state, lease_id, leased_until)
                    SELECT v.company_id, \(endpoint), v.event_id, 'failed', \(leaseID), now() + make_interval(secs => \(lease.seconds))
                      FROM event AS v
                    RETURNING company_id, delivery_id, endpoint_id, event_id, lease_id, attempts, state
                )
                SELECT d.company_id, d.delivery_id, d.endpoint_id, d.event_id, d.lease_id, d.attempts, e.url, e.secret,
                       e.previous_secret, v.body, 'failed'
                  FROM delivery AS d, endpoint AS e, event AS v
                """
            ).single
            guard let row else { throw StorageError.notFound }
            return try Self.claimed(row)
        }
    }

    static let claimedColumns: StaticString = """
        d.company_id, d.delivery_id, d.endpoint_id, d.event_id, d.lease_id, d.attempts, p.url, p.secret, p.previous_secret,
        v.body, d.state
        """

    static func claimed(_ row: PostgresRow) throws -> Claimed {
        let (company, id, endpoint, event, lease, attempts, url, secret, previous, body, state) = try row.decode(
            (CompanyID, WebhookDeliveryID, WebhookEndpointID, Int64, Int64, Int, String, Data, Data?, String, String).self)
        return Claimed(
            company: company, id: id, endpoint: endpoint, event: event, leaseID: lease, attempts: attempts, url: url,
            secrets: [WebhookSecret(key: secret)] + (previous.map { [WebhookSecret(key: $0)] } ?? []), body: body,
            state: WebhookDeliveryState(rawValue: state) ?? .failed)
    }

    // MARK: Outcomes

    /// Records attempts, each only if its lease is still the one it was made under (a
    /// worker that stalled past its lease finds another worker took the delivery over),
    /// and updates the endpoints' health: any success ends a failure streak; a 410, or a
    /// streak of `failureLimit`, disables the endpoint. One statement for the whole batch.
    /// Returns the endpoints this disabled.
    @discardableResult
    public func record(_ attempts: [Attempt], failureLimit: Duration = .seconds(5 * 86_400)) async throws -> [Disabled] {
        guard !attempts.isEmpty else { return [] }
        return try await database.client.withConnection { connection in
            try await Self.record(attempts, failureLimit: failureLimit, on: connection)
        }
    }

    /// The same, within one company (the API's own attempts, under its row-level security).
    @discardableResult
    public func record(_ attempt: Attempt, company: CompanyID, failureLimit: Duration = .seconds(5 * 86_400)) async throws -> [Disabled] {
        try await database.withTenant(company) { connection in
            try await Self.record([attempt], failureLimit: failureLimit, on: connection)
        }
    }

    static func record(_ attempts: [Attempt], failureLimit: Duration, on connection: PostgresConnection) async throws -> [Disabled] {
        let outcomes = try String(decoding: JSONEncoder().encode(attempts.map(OutcomeRow.init)), as: UTF8.self)
        return try await connection.query(
            """
            WITH outcome AS (
                SELECT * FROM json_to_recordset(\(outcomes)::json) AS o(
                    company_id bigint, delivery_id bigint, lease_id bigint, started_at timestamptz, duration_ms integer,
                    http_status integer, error text, excerpt text, state text, delay_ms bigint, gone boolean, succeeded boolean)
            ), recorded AS (
                UPDATE webhook_deliveries AS d
                   SET attempts = d.attempts + 1,
                       -- A replay (/retry) of a delivery that had succeeded does not undo it.
                       state = CASE WHEN o.state = 'failed' AND d.state = 'succeeded' THEN 'succeeded' ELSE o.state END,
                       next_attempt_at = CASE WHEN o.state = 'pending' THEN now() + o.delay_ms * interval '1 millisecond' END,
                       last_attempt_at = o.started_at, lease_id = NULL, leased_until = NULL
                  FROM outcome AS o
                 WHERE d.company_id = o.company_id AND d.delivery_id = o.delivery_id AND d.lease_id = o.lease_id
                RETURNING d.company_id, d.delivery_id, d.endpoint_id, d.attempts, o.started_at, o.duration_ms,
                          o.http_status, o.error, o.excerpt, o.gone, o.succeeded
            ), logged AS (
                INSERT INTO webhook_attempts (company_id, delivery_id, attempt, started_at, duration_ms, http_status, error, response_excerpt)
                SELECT company_id, delivery_id, attempts, started_at, duration_ms, http_status, left(error, 300), left(excerpt, 256)
                  FROM recorded
            ), health AS (
                SELECT company_id, endpoint_id, bool_or(succeeded) AS succeeded, bool_or(gone) AS gone,
                       min(started_at) AS first_attempt
                  FROM recorded GROUP BY company_id, endpoint_id
            ), judged AS (
                -- A failure streak that began before `streak_limit` (or a 410) disables it.
                SELECT h.*, now() - make_interval(secs => \(failureLimit.seconds)) AS streak_limit FROM health AS h
            )
            -- Judged from the endpoint's row as it is when updated (the SET and WHERE read the
            -- latest committed version, not the statement's snapshot), so a success or a
            -- PATCH committed meanwhile is not overwritten; rows whose health does not change
            -- are not written.
            UPDATE webhook_endpoints AS e
               SET failing_since = CASE WHEN j.succeeded THEN NULL ELSE coalesce(e.failing_since, j.first_attempt) END,
                   enabled = e.enabled
                             AND NOT (j.gone OR (NOT j.succeeded AND coalesce(e.failing_since, j.first_attempt) <= j.streak_limit)),
                   disabled_reason = CASE WHEN NOT e.enabled THEN e.disabled_reason
                                          WHEN j.gone THEN 'the endpoint answered 410 Gone'
                                          WHEN NOT j.succeeded AND coalesce(e.failing_since, j.first_attempt) <= j.streak_limit
                                               THEN \(Self.failingReason(failureLimit))
                                     END,
                   disabled_at = CASE WHEN NOT e.enabled THEN e.disabled_at
                                      WHEN j.gone OR (NOT j.succeeded AND coalesce(e.failing_since, j.first_attempt) <= j.streak_limit)
                                           THEN now()
                                 END
              FROM judged AS j
             WHERE e.company_id = j.company_id AND e.endpoint_id = j.endpoint_id
               AND ((j.gone AND e.enabled)
                    OR (j.succeeded AND e.failing_since IS NOT NULL)
                    OR (NOT j.succeeded AND (e.failing_since IS NULL OR (e.enabled AND e.failing_since <= j.streak_limit))))
            RETURNING e.company_id, e.endpoint_id, CASE WHEN NOT e.enabled AND e.disabled_at = now() THEN e.disabled_reason END
            """
        ).compactMap { row in
            let (company, endpoint, reason) = try row.decode((CompanyID, WebhookEndpointID, String?).self)
            return reason.map { Disabled(company: company, endpoint: endpoint, reason: $0) }
        }
    }

    /// Why an endpoint whose attempts all failed for `limit` is disabled.
    public static func failingReason(_ limit: Duration) -> String {
        "every delivery failed for \(limit.components.seconds / 86_400) days"
    }

    struct OutcomeRow: Encodable {
        var company_id: Int64
        var delivery_id: Int64
        var lease_id: Int64
        var started_at: String
        var duration_ms: Int64
        var http_status: Int?
        var error: String?
        var excerpt: String?
        var state: String
        var delay_ms: Int64?
        var gone: Bool
        var succeeded: Bool

        init(_ attempt: Attempt) {
            company_id = attempt.delivery.company.rawValue
            delivery_id = attempt.delivery.id.rawValue
            lease_id = attempt.delivery.leaseID
            started_at = Timestamp.format(attempt.startedAt)
            duration_ms = attempt.duration.roundedUpMilliseconds
            http_status = attempt.httpStatus
            error = attempt.error
            excerpt = attempt.responseExcerpt
            gone = attempt.gone
            switch attempt.next {
            case .succeeded:
                state = WebhookDeliveryState.succeeded.rawValue
                succeeded = true
            case .retry(let delay):
                state = WebhookDeliveryState.pending.rawValue
                delay_ms = delay.roundedUpMilliseconds
                succeeded = false
            case .giveUp:
                state = WebhookDeliveryState.failed.rawValue
                succeeded = false
            }
        }
    }

    // MARK: The log

    /// An endpoint's deliveries, newest first, after (older than) `before`; nil when the
    /// endpoint does not exist.
    public func deliveries(
        endpoint: WebhookEndpointID, state: WebhookDeliveryState?, before: WebhookDeliveryID?, limit: Int, company: CompanyID
    ) async throws -> [WebhookDeliveryRecord]? {
        try await database.withTenant(company) { connection in
            let exists = try await connection.query(
                "SELECT 1 FROM webhook_endpoints WHERE company_id = \(company) AND endpoint_id = \(endpoint)")
            guard !exists.isEmpty else { return nil }
            let rows = try await connection.query(
                """
                SELECT d.delivery_id, d.event_id, v.type, d.created_at, d.state, d.next_attempt_at
                  FROM webhook_deliveries AS d JOIN webhook_events AS v USING (company_id, event_id)
                 WHERE d.company_id = \(company) AND d.endpoint_id = \(endpoint)
                   AND (\(state?.rawValue)::text IS NULL OR d.state = \(state?.rawValue))
                   AND (\(before)::bigint IS NULL OR d.delivery_id < \(before))
                 ORDER BY d.delivery_id DESC
                 LIMIT \(limit)
                """
            ).map { row in
                let (id, event, type, created, state, next) = try row.decode(
                    (WebhookDeliveryID, Int64, String, Date, String, Date?).self)
                return WebhookDeliveryRecord(
                    id: id, messageID: WebhookMessageID.text(event: event), eventType: WebhookEventType(rawValue: type) ?? .ping,
                    createdAt: created, state: WebhookDeliveryState(rawValue: state) ?? .pending, nextAttemptAt: next,
                    attempts: [])
            }
            guard !rows.isEmpty else { return [] }
            var attempts: [WebhookDeliveryID: [WebhookAttemptRecord]] = [:]
            for row in try await connection.query(
                """
                SELECT delivery_id, attempt, started_at, duration_ms, http_status, error, response_excerpt
                  FROM webhook_attempts
                 WHERE company_id = \(company) AND delivery_id = ANY(\(rows.map(\.id.rawValue))::bigint[])
                 ORDER BY delivery_id, attempt
                """)
            {
                let (id, number, started, duration, status, error, excerpt) = try row.decode(
                    (WebhookDeliveryID, Int, Date, Int, Int?, String?, String?).self)
                attempts[id, default: []].append(
                    WebhookAttemptRecord(
                        number: number, startedAt: started, durationMilliseconds: duration, httpStatus: status, error: error,
                        responseExcerpt: excerpt))
            }
            return rows.map { record in
                var record = record
                record.attempts = attempts[record.id] ?? []
                return record
            }
        }
    }

    /// Disables the endpoints whose failure streak has lasted `failureLimit` even though no
    /// attempt has failed since (the last retries of a quiet endpoint's events end after
    /// about four days).
    @discardableResult
    public func disableFailingEndpoints(failureLimit: Duration = .seconds(5 * 86_400)) async throws -> [Disabled] {
        try await database.client.withConnection { connection in
            try await connection.query(
                """
                UPDATE webhook_endpoints
                   SET enabled = false, disabled_reason = \(Self.failingReason(failureLimit)), disabled_at = now()
                 WHERE enabled AND failing_since <= now() - make_interval(secs => \(failureLimit.seconds))
                RETURNING company_id, endpoint_id, disabled_reason
                """
            ).map { row in
                let (company, endpoint, reason) = try row.decode((CompanyID, WebhookEndpointID, String).self)
                return Disabled(company: company, endpoint: endpoint, reason: reason)
            }
        }
    }

    // MARK: Expiry

    /// Emits `request.expired` for response windows that closed since the last sweep, for
    /// the companies that want it. `longestWindow`: the response window (none is longer).
    @discardableResult
    public func emitExpired(longestWindow: Duration) async throws -> Int {
        try await database.client.withConnection { connection in
            try await connection.query(
                "SELECT emit_expired_webhook_events(make_interval(secs => \(longestWindow.seconds)))"
            ).one().decode(Int.self)
        }
    }
}

extension Duration {
    /// Whole seconds, for `make_interval(secs => …)`.
    fileprivate var seconds: Int64 { max(0, components.seconds) }
}
