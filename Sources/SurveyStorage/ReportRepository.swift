import Foundation
import Postgres
import SurveyDomain

/// Reports, counted by PostgreSQL: whole UTC months and days from `report_rollups`, the
/// rest from `survey_requests`, as `RollupPlan` lays out (docs/REPORTS.md). They read from
/// a hot standby when `reads` has a fresh one; compaction writes to the primary.
public struct ReportRepository: Sendable {
    let database: Database
    let reads: ReportReads

    public init(database: Database) {
        self.init(reads: ReportReads(primary: database))
    }

    public init(reads: ReportReads) {
        self.database = reads.primary
        self.reads = reads
    }

    public enum Failure: Error, Equatable {
        /// The survey does not exist, or belongs to another company.
        case surveyNotFound
        /// The breakdown would have more entries than `ReportLimits.maximumGroups`.
        case tooManyGroups
    }

    /// Folds the rows the triggers appended to up to `maximumCells` rollup cells into one
    /// row per key. Reports read the same before and after; they only get faster. Returns
    /// the number of cells folded (0 also when another compaction is running).
    public func compact(maximumCells: Int = 500) async throws -> Int {
        try await database.client.withConnection { connection in
            try await connection.query("SELECT compact_report_rollups(\(maximumCells))").one().decode(Int.self)
        }
    }

    /// The counts of each bucket, and the breakdown if the query asks for one; all read
    /// from one snapshot, so the breakdown and the totals agree.
    public func report(_ query: ReportQuery, buckets: [Range<Date>], company: CompanyID) async throws -> ReportResult {
        let pieces = RollupPlan.pieces(for: buckets)
        let read = try await reads.read { database in try await database.withTenant(company, isolation: .repeatableRead) { connection in
            if let survey = query.filter.survey {
                let found = try await connection.query(
                    "SELECT 1 FROM surveys WHERE company_id = \(company) AND survey_id = \(survey)")
                guard !found.isEmpty else { throw Failure.surveyNotFound }
            }
            var totals = Array(repeating: ReportCounts.zero, count: buckets.count)
            for row in try await connection.query(Self.statement(query, grouping: nil, pieces: pieces, company: company)) {
                let (bucket, _, _, _, counts) = try Self.decode(row)
                totals[bucket] = counts
            }
            var groups: [(key: ReportGroupKey, counts: ReportCounts)] = []
            if let grouping = query.grouping {
                for row in try await connection.query(Self.statement(query, grouping: grouping, pieces: pieces, company: company)) {
                    guard groups.count < ReportLimits.maximumGroups else { throw Failure.tooManyGroups }
                    let (_, key, name, interactionType, counts) = try Self.decode(row)
                    groups.append((Self.groupKey(grouping, key: key, name: name, interactionType: interactionType), counts))
                }
            }
            return ReportResult(buckets: totals, groups: groups)
        } }
        var result = read.value
        result.dataAsOf = read.asOf
        return result
    }

    /// Each survey's counts in each bucket, from one statement: the whole of the dashboard's
    /// overview (the company's trend and totals are their sums, exact integers, so they
    /// equal the API's report and trend). Surveys with no request in the period are
    /// absent. Throws `tooManyGroups` past `ReportLimits.maximumGroups` surveys.
    public func surveyTrends(_ query: ReportQuery, buckets: [Range<Date>], company: CompanyID) async throws -> [SurveyID: [ReportCounts]] {
        let pieces = RollupPlan.pieces(for: buckets)
        let limit = ReportLimits.maximumGroups * max(1, buckets.count) + 1
        return try await reads.read { database in try await database.withTenant(company, isolation: .repeatableRead) { connection in
            let rows = try await connection.query(Self.statement(query, grouping: .survey, pieces: pieces, company: company, limit: limit))
            var trends: [SurveyID: [ReportCounts]] = [:]
            for row in rows {
                let (bucket, key, _, _, counts) = try Self.decode(row)
                guard let key, let id = Int64(key) else { continue }
                trends[SurveyID(rawValue: id), default: Array(repeating: .zero, count: buckets.count)][bucket] = counts
            }
            guard trends.count <= ReportLimits.maximumGroups else { throw Failure.tooManyGroups }
            return trends
        } }.value
    }

    private static func decode(_ row: PostgresRow) throws -> (Int, String?, String?, String?, ReportCounts) {
        let (bucket, key, name, interactionType, requests, failed, good, bad, promoters, passives, detractors) = try row.decode(
            (Int, String?, String?, String?, Int64, Int64, Int64, Int64, Int64, Int64, Int64).self)
        return (
            bucket, key, name, interactionType,
            ReportCounts(
                requests: requests, failed: failed, good: good, bad: bad, promoters: promoters, passives: passives,
                detractors: detractors)
        )
    }

    private static func groupKey(_ grouping: ReportGrouping, key: String?, name: String?, interactionType: String?) -> ReportGroupKey {
        switch grouping {
        case .survey:
            .survey(SurveyID(rawValue: Int64(key ?? "") ?? 0), name: name ?? "", interactionType: interactionType ?? "")
        case .interactionType: .interactionType(key ?? "")
        case .segment: .segment(key)
        case .language: .language(key)
        }
    }

    /// The report statement. Its text is chosen from fixed fragments by the query's shape
    /// (grouping, which filters are present); every value is a bound parameter.
    static func statement(
        _ query: ReportQuery, grouping: ReportGrouping?, pieces: [RollupPlan.Piece], company: CompanyID,
        limit: Int = ReportLimits.maximumGroups + 1
    ) -> PostgresQuery {
        let filter = query.filter
        // The least detailed rollup level that has what the report filters or groups by:
        // every level adds up to all requests, and each detail multiplies the rows.
        let needsSegments = !filter.segments.isEmpty || grouping == .segment
        let needsLanguage = grouping == .language
        let detail =
            switch (needsSegments, needsLanguage) {
            case (false, false): "survey"
            case (true, false): "segments"
            case (false, true): "language"
            case (true, true): "full"
            }

        var bindings: [String?] = []
        func bind(_ value: some PostgresEncodable) -> String {
            bindings.append(value.postgresText)
            return "$\(bindings.count)"
        }
        let companyParameter = bind(company)
        let sources = bind(pieces.map { piece -> String in
            switch piece.source {
            case .requests: "requests"
            case .days: "day"
            case .months: "month"
            }
        })
        let starts = bind(pieces.map(\.start))
        let ends = bind(pieces.map(\.end))
        let bucketIndexes = bind(pieces.map(\.bucket))
        let signs = bind(pieces.map(\.sign))

        /// The filter's conditions on rows aliased `alias`.
        func conditions(_ alias: String) -> String {
            var sql = ""
            if let survey = filter.survey { sql += " AND \(alias).survey_id = \(bind(survey))" }
            if let channel = filter.channel { sql += " AND \(alias).channel = \(bind(channel.rawValue))" }
            if !filter.segments.isEmpty {
                let op = filter.segmentMode == .all ? "@>" : "&&"
                sql += " AND \(alias).segments \(op) \(bind(filter.segments))::text[]"
            }
            return sql
        }
        let requestConditions = conditions("r")
        let rollupConditions = conditions("ro")

        // The inner key, per source, and what the rows are joined with to get it.
        let (requestKey, requestJoin, rollupKey, rollupJoin): (String, String, String, String) =
            switch grouping {
            case nil: ("NULL::text", "", "NULL::text", "")
            case .survey, .interactionType: ("r.survey_id::text", "", "ro.survey_id::text", "")
            case .language: ("NULLIF(r.language, '')", "", "NULLIF(ro.language, '')", "")
            case .segment:
                (
                    "s.segment",
                    " CROSS JOIN LATERAL unnest(CASE WHEN cardinality(r.segments) = 0 THEN '{NULL}'::text[] ELSE r.segments END) AS s(segment)",
                    "s.segment",
                    " CROSS JOIN LATERAL unnest(CASE WHEN cardinality(ro.segments) = 0 THEN '{NULL}'::text[] ELSE ro.segments END) AS s(segment)"
                )
            }
        let detailParameter = bind(detail)

        let sums = """
            sum(c.sign * c.requests)::bigint, sum(c.sign * c.failed)::bigint, sum(c.sign * c.good)::bigint,
            sum(c.sign * c.bad)::bigint, sum(c.sign * c.promoters)::bigint, sum(c.sign * c.passives)::bigint,
            sum(c.sign * c.detractors)::bigint
            """
        // A group whose requests all fall outside the period can still appear, with zeros,
        // when a month cell's rows are cancelled by a subtracted edge.
        let having = grouping == nil ? "" : "\n HAVING sum(c.sign * c.requests) <> 0"
        let outer: String =
            switch grouping {
            case nil, .language, .segment:
                """
                SELECT c.bucket, c.key, NULL::text, NULL::text, \(sums)
                  FROM counted AS c
                 GROUP BY c.bucket, c.key\(having)
                 ORDER BY c.bucket, c.key COLLATE "C" NULLS LAST
                """
            case .survey:
                """
                SELECT c.bucket, c.key, s.name, s.interaction_type, \(sums)
                  FROM counted AS c
                  JOIN surveys AS s ON s.company_id = \(companyParameter) AND s.survey_id = c.key::bigint
                 GROUP BY c.bucket, c.key, s.name, s.interaction_type\(having)
                 ORDER BY c.bucket, c.key::bigint
                """
            case .interactionType:
                """
                SELECT c.bucket, s.interaction_type, NULL::text, NULL::text, \(sums)
                  FROM counted AS c
                  JOIN surveys AS s ON s.company_id = \(companyParameter) AND s.survey_id = c.key::bigint
                 GROUP BY c.bucket, s.interaction_type\(having)
                 ORDER BY c.bucket, s.interaction_type COLLATE "C"
                """
            }

        let sql = """
            WITH piece AS (
                SELECT * FROM unnest(\(sources)::text[], \(starts)::timestamptz[], \(ends)::timestamptz[], \(bucketIndexes)::int[], \(signs)::int[])
                    AS p(source, lo, hi, bucket, sign)
            ), edge AS (
                -- Adjacent buckets share their edges (the hours between the company's local
                -- midnight and the UTC day): each distinct range is read once.
                SELECT DISTINCT lo, hi FROM piece WHERE source = 'requests'
            ), edge_counted AS MATERIALIZED (
                SELECT e.lo, e.hi, x.*
                  FROM edge AS e
                 CROSS JOIN LATERAL (
                    SELECT \(requestKey) AS key,
                           count(*) AS requests,
                           count(*) FILTER (WHERE r.status = 'failed') AS failed,
                           count(*) FILTER (WHERE r.score IS NOT NULL) AS good,
                           count(*) FILTER (WHERE r.score IS NULL AND r.bad_replies > 0) AS bad,
                           count(*) FILTER (WHERE r.score >= 9) AS promoters,
                           count(*) FILTER (WHERE r.score BETWEEN 7 AND 8) AS passives,
                           count(*) FILTER (WHERE r.score <= 6) AS detractors
                      FROM survey_requests AS r\(requestJoin)
                     WHERE r.company_id = \(companyParameter)
                       AND r.created_at >= e.lo AND r.created_at < e.hi\(requestConditions)
                     GROUP BY 1
                 ) AS x
            ), counted AS (
                SELECT p.bucket, p.sign, ec.key, ec.requests, ec.failed, ec.good, ec.bad, ec.promoters, ec.passives, ec.detractors
                  FROM piece AS p
                  JOIN edge_counted AS ec ON ec.lo = p.lo AND ec.hi = p.hi
                 WHERE p.source = 'requests'
                UNION ALL
                SELECT p.bucket, p.sign, x.*
                  FROM piece AS p
                 CROSS JOIN LATERAL (
                    SELECT \(rollupKey) AS key,
                           sum(ro.requests) AS requests, sum(ro.failed) AS failed, sum(ro.good) AS good, sum(ro.bad) AS bad,
                           sum(ro.promoters) AS promoters, sum(ro.passives) AS passives, sum(ro.detractors) AS detractors
                      FROM report_rollups AS ro\(rollupJoin)
                     WHERE p.source <> 'requests' AND ro.company_id = \(companyParameter) AND ro.detail = \(detailParameter)
                       AND ro.grain = p.source
                       AND ro.bucket >= (p.lo AT TIME ZONE 'UTC')::date AND ro.bucket < (p.hi AT TIME ZONE 'UTC')::date\(rollupConditions)
                     GROUP BY 1
                 ) AS x
            )
            \(outer)
            LIMIT \(limit)
            """
        return PostgresQuery(unsafeSQL: sql, bindings: bindings)
    }
}
