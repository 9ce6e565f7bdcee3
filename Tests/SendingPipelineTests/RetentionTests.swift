import Foundation
import Postgres
import SurveyStorage
import SurveyWorker
import Testing

/// Issue 12: `inbound_messages`, `provider_messages` and expired `open_surveys` rows were
/// never purged. The worker's janitor purges what is past its period, in small batches.
@Suite struct RetentionTests {
    @Test func rowsPastTheirPeriodArePurgedAndTheRestKept() async throws {
        let pipeline = try await Pipeline.make("retention")
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
}
