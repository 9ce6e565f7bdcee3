import Foundation
import Postgres
import TestSupport
import Testing

/// The rollup triggers against statements no code path of ours runs but an operator may:
/// whatever changes, every level of `report_rollups` still adds up to the rows.
@Suite struct ReportRollupTriggerTests {
    /// Rows per company whose rollup sums at some level or grain differ from the rows.
    static func divergent(_ connection: PostgresConnection) async throws -> Int {
        try await connection.query(
            """
            WITH raw AS (
                SELECT company_id, count(*) AS requests, count(*) FILTER (WHERE score >= 9) AS promoters,
                       count(*) FILTER (WHERE status = 'failed') AS failed
                  FROM survey_requests GROUP BY company_id
            ), rolled AS (
                SELECT company_id, detail, grain, sum(requests) AS requests, sum(promoters) AS promoters, sum(failed) AS failed
                  FROM report_rollups GROUP BY company_id, detail, grain
            ), levels AS (
                SELECT c.company_id, d.detail, g.grain
                  FROM (SELECT company_id FROM raw UNION SELECT company_id FROM rolled) AS c
                 CROSS JOIN (VALUES ('survey'), ('segments'), ('language'), ('full')) AS d(detail)
                 CROSS JOIN (VALUES ('day'), ('month')) AS g(grain)
            )
            SELECT count(*)::int FROM levels AS l
              LEFT JOIN raw AS r USING (company_id)
              LEFT JOIN rolled AS o USING (company_id, detail, grain)
             WHERE (coalesce(r.requests, 0), coalesce(r.promoters, 0), coalesce(r.failed, 0))
                   <> (coalesce(o.requests, 0), coalesce(o.promoters, 0), coalesce(o.failed, 0))
            """
        ).one().decode(Int.self)
    }

    @Test func updatesOfAnyColumnAndTruncateKeepTheRollupsExact() async throws {
        let url = try await TestDatabase.migratedScratchDatabase("rollups")
        let connection = try await TestDatabase.connect(url: url)
        try await connection.simpleQuery(
            """
            INSERT INTO companies (company_id, name) VALUES (1, 'a'), (2, 'b');
            INSERT INTO surveys (company_id, survey_id, name, interaction_type) VALUES (1, 1, 's', 'x'), (2, 20, 't', 'y');
            INSERT INTO questions (company_id, question_id, survey_id, body, language) VALUES (1, 1, 1, 'q', 'en'), (2, 200, 20, 'q', 'fr');
            INSERT INTO survey_requests (company_id, survey_id, question_id, channel, destination_hash, created_at, status, score, segments, language)
            SELECT 1, 1, 1, 'SMS', decode(md5(i::text) || md5(i::text), 'hex'), now() - i * interval '7 hours', 'delivered',
                   CASE WHEN i % 3 = 0 THEN NULL ELSE i % 11 END, CASE WHEN i % 2 = 0 THEN '{a}'::text[] ELSE '{}' END,
                   CASE WHEN i % 4 = 0 THEN NULL ELSE 'en' END
              FROM generate_series(1, 200) AS i;
            """)
        #expect(try await Self.divergent(connection) == 0)
        // Moves between companies, new request ids, new scores, times and statuses.
        try await connection.simpleQuery(
            """
            UPDATE survey_requests SET company_id = 2, survey_id = 20, question_id = 200 WHERE request_id % 5 = 0;
            UPDATE survey_requests SET request_id = request_id + 100000, score = 10 WHERE request_id % 7 = 0;
            UPDATE survey_requests SET created_at = created_at - interval '40 days', status = 'failed' WHERE request_id % 3 = 1;
            UPDATE survey_requests SET language = NULL, segments = '{b,c}' WHERE request_id % 4 = 2;
            UPDATE survey_requests SET status = 'sent';
            """)
        #expect(try await Self.divergent(connection) == 0)
        _ = try await connection.query("SELECT compact_report_rollups(100000)")
        #expect(try await Self.divergent(connection) == 0)
        try await connection.simpleQuery("TRUNCATE survey_requests CASCADE")
        #expect(try await connection.query("SELECT count(*)::int FROM report_rollups").one().decode(Int.self) == 0)
        await connection.close()
    }
}
