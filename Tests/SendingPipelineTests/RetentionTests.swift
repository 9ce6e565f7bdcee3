import Foundation
import Postgres
import SurveyDomain
import SurveyStorage
import SurveyWorker
import Testing

/// Issue 12: `inbound_messages`, `provider_messages` and expired `open_surveys` rows were
/// never purged. The worker's janitor purges what is past its period, in small batches.
@Suite struct RetentionTests {
    @Test func rowsPastTheirPeriodArePurgedAndTheRestKept() async throws {
        let pipeline = try await Pipeline.make("retention")
        let tenant = try await pipeline.company()
        try await pipeline.superuser.withConnection { connection in
            // Webhook events of 31 and 29 days, the old one with a delivery and its attempt.
            try await connection.query(
                """
                WITH endpoint AS (
                    INSERT INTO webhook_endpoints (company_id, url, events, secret)
                    VALUES (\(tenant.id), 'https://example.com/h', '{request.failed}', sha256('k'::bytea))
                    RETURNING company_id, endpoint_id
                ), old AS (
                    INSERT INTO webhook_events (company_id, type, body, created_at)
                    VALUES (\(tenant.id), 'ping', '{}', now() - interval '31 days'), (\(tenant.id), 'ping', '{}', now() - interval '29 days')
                    RETURNING company_id, event_id, created_at
                ), delivery AS (
                    INSERT INTO webhook_deliveries (company_id, endpoint_id, event_id, state)
                    SELECT o.company_id, e.endpoint_id, o.event_id, 'failed' FROM old AS o, endpoint AS e
                    RETURNING company_id, delivery_id
                )
                INSERT INTO webhook_attempts (company_id, delivery_id, attempt, started_at, duration_ms)
                SELECT company_id, delivery_id, 1, now(), 5 FROM delivery
                """)
        }
        try await pipeline.superuser.withConnection { connection in
            // Dashboard sessions last used 2 days and 1 hour ago.
            try await connection.query(
                """
                INSERT INTO dashboard_sessions (company_id, token_id, session_hash, last_seen_at)
                SELECT company_id, token_id, sha256(('session' || age)::bytea), now() - make_interval(hours => age)
                  FROM (SELECT company_id, token_id FROM api_tokens WHERE company_id = \(tenant.id) LIMIT 1) AS t,
                       (VALUES (48), (1)) AS a(age)
                """)
        }
        try await pipeline.superuser.withConnection { connection in
            try await connection.simpleQuery(
                """
                INSERT INTO inbound_messages (provider_message_id, received_at)
                SELECT 'SMold' || i, now() - interval '8 days' FROM generate_series(1, 5) AS i;
                INSERT INTO inbound_messages (provider_message_id, received_at)
                SELECT 'SMnew' || i, now() - interval '6 days' FROM generate_series(1, 3) AS i;
                INSERT INTO provider_messages (provider_message_id, company_id, request_id, created_at)
                SELECT 'SMold' || i, 1, i, now() - interval '36 days' FROM generate_series(1, 5) AS i;
                INSERT INTO provider_messages (provider_message_id, company_id, request_id, created_at)
                SELECT 'SMnew' || i, 1, i, now() - interval '34 days' FROM generate_series(1, 3) AS i;
                INSERT INTO open_surveys (destination_hash, company_id, request_id, expires_at)
                SELECT sha256(('old' || i)::bytea), 1, i, now() - interval '2 days' FROM generate_series(1, 5) AS i;
                INSERT INTO open_surveys (destination_hash, company_id, request_id, expires_at)
                SELECT sha256(('new' || i)::bytea), 1, i, now() - interval '1 hour' FROM generate_series(1, 3) AS i;
                INSERT INTO early_delivery_statuses (provider_message_id, status, received_at)
                VALUES ('SMgone', 'delivered', now() - interval '2 days'), ('SMkept', 'failed', now());
                """)
        }
        var configuration = RoutingJanitor.Configuration()
        // Batches of two: five old rows take three statements, each its own transaction.
        configuration.batchSize = 2
        let janitor = RoutingJanitor(database: Database(client: pipeline.workerPool), configuration: configuration, logger: pipeline.logger)
        let purged = await janitor.purge()
        #expect(purged[.inboundMessages] == 5)
        #expect(purged[.providerMessages] == 5)
        #expect(purged[.openSurveys] == 5)
        #expect(purged[.earlyDeliveryStatuses] == 1)
        #expect(purged[.webhookEvents] == 1)
        #expect(purged[.dashboardSessions] == 1)
        let sessionsLeft = try await pipeline.superuser.withConnection { connection in
            try await connection.query("SELECT count(*)::int FROM dashboard_sessions WHERE last_seen_at > now() - interval '2 hours'").one()
                .decode(Int.self)
        }
        #expect(sessionsLeft == 1, "the session used an hour ago stays")
        let webhookRows = try await pipeline.superuser.withConnection { connection in
            try await connection.query(
                """
                SELECT (SELECT count(*) FROM webhook_events)::int, (SELECT count(*) FROM webhook_deliveries)::int,
                       (SELECT count(*) FROM webhook_attempts)::int
                """
            ).one().decode((Int, Int, Int).self)
        }
        #expect(webhookRows == (1, 1, 1), "the old event's delivery and attempt went with it")
        let left = try await pipeline.superuser.withConnection { connection in
            try await connection.query(
                """
                SELECT (SELECT count(*) FROM inbound_messages WHERE provider_message_id LIKE 'SMnew%')::int,
                       (SELECT count(*) FROM inbound_messages)::int,
                       (SELECT count(*) FROM provider_messages)::int, (SELECT count(*) FROM open_surveys)::int,
                       (SELECT string_agg(provider_message_id, ',') FROM early_delivery_statuses)
                """
            ).one().decode((Int, Int, Int, Int, String?).self)
        }
        #expect(left.0 == 3 && left.1 == 3)
        #expect(left.2 == 3)
        #expect(left.3 == 3)
        #expect(left.4 == "SMkept")
        // A second run finds nothing more.
        #expect(await janitor.purge().values.reduce(0, +) == 0)
        await pipeline.close()
    }

    /// A claim past its period whose jobs are still leased (its worker died and no reaper
    /// has run since) is kept for the reaper, which records its noted sends as sent; purging
    /// it would have taken its notes along and failed those sends as `uncertain`.
    @Test func aClaimTheReaperStillNeedsIsKept() async throws {
        let pipeline = try await Pipeline.make("retention_claims")
        let tenant = try await pipeline.company()
        let ids = try await pipeline.api { client in try await pipeline.send(to: [phone()], headers: tenant.headers, client: client) }
        let queue = QueueRepository(database: Database(client: pipeline.workerPool), policy: SendingPolicy())
        let jobs = try await queue.claim(limit: 10, lease: .seconds(60))
        #expect(try await queue.markStarted(jobs).claimHeld)
        let sid = Pipeline.messageSID()
        try await queue.complete([(jobs[0], .sent(providerMessageID: sid, segments: 1))], noting: true)
        try await pipeline.superuser.withConnection { connection in
            try await connection.simpleQuery(
                """
                UPDATE sms_claims SET claimed_at = now() - interval '2 days';
                INSERT INTO sms_claims (lease_id, started_through, claimed_at) VALUES ('finished-long-ago', 3, now() - interval '2 days');
                """)
        }
        let janitor = RoutingJanitor(database: Database(client: pipeline.workerPool), configuration: .init(), logger: pipeline.logger)
        #expect(await janitor.purge()[.claims] == 1)
        try await pipeline.superuser.withConnection { connection in
            try await connection.query("UPDATE sms_jobs SET leased_until = now() - interval '1 second'")
        }
        #expect(try await queue.failExpiredLeases() == (failed: 0, returned: 0))
        let request = try await pipeline.request(ids[0])
        #expect(request.status == "sent" && request.messageID == sid)
        await pipeline.close()
    }

    /// `open_surveys` has no index on its expiry (so that the send path's update of it stays
    /// heap-only) and is swept by ranges of pages: every range is visited, expired slots go,
    /// the others stay.
    @Test func slotsAreSweptOverEveryPage() async throws {
        let pipeline = try await Pipeline.make("retentionsweep")
        try await pipeline.superuser.withConnection { connection in
            try await connection.query(
                """
                INSERT INTO open_surveys (destination_hash, company_id, request_id, expires_at)
                SELECT sha256(('slot' || i)::bytea), 1, i,
                       CASE WHEN i % 3 = 0 THEN now() - interval '2 days' ELSE now() + interval '1 hour' END
                  FROM generate_series(1, 6000) AS i
                """)
        }
        let pages = try await pipeline.superuser.withConnection { connection in
            try await connection.query("SELECT (pg_relation_size('open_surveys') / 8192)::int").one().decode(Int.self)
        }
        var configuration = RoutingJanitor.Configuration()
        configuration.sweepPages = 4
        #expect(pages > 10 * configuration.sweepPages, "the slots span many ranges: \(pages) pages")
        let janitor = RoutingJanitor(database: Database(client: pipeline.workerPool), configuration: configuration, logger: pipeline.logger)
        #expect(await janitor.purge()[.openSurveys] == 2000)
        let left = try await pipeline.superuser.withConnection { connection in
            try await connection.query(
                "SELECT count(*)::int, count(*) FILTER (WHERE expires_at < now())::int FROM open_surveys"
            ).one().decode((Int, Int).self)
        }
        #expect(left == (4000, 0))
        #expect(await janitor.purge()[.openSurveys] == 0)
        await pipeline.close()
    }

    /// Each recorded send inserts into `provider_messages` and moves `open_surveys.expires_at`.
    /// A B-tree on either date cost the drain a fifth of its rate (docs/BENCHMARKS.md, sending
    /// run 14): the slots' expiry carries no index, and the append-only tables' dates a BRIN one.
    @Test func theSendPathsTablesCarryNoIndexOnTheDatesItWrites() async throws {
        let pipeline = try await Pipeline.make("retentionindexes")
        let indexes = try await pipeline.superuser.withConnection { connection in
            try await connection.query(
                """
                SELECT string_agg(c.relname || ':' || am.amname, ',' ORDER BY c.relname)
                  FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid JOIN pg_am AS am ON am.oid = c.relam
                 WHERE i.indrelid IN ('open_surveys'::regclass, 'provider_messages'::regclass, 'inbound_messages'::regclass)
                """
            ).one().decode(String.self)
        }
        #expect(
            indexes
                == "inbound_messages_pkey:btree,inbound_messages_received:brin,open_surveys_pkey:btree,"
                + "provider_messages_created:brin,provider_messages_pkey:btree")
        await pipeline.close()
    }
}
