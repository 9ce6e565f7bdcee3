// reference-server: the product's survey list served by Hummingbird 2 + vapor/postgres-nio,
// as a reference point for the HTTP throughput benchmark ("framework + best-of-breed Swift
// Postgres driver" against our own stack). Deliberately minimal: one tenant (`COMPANY_ID`, default 1), one
// page (limit 50), no real token check, so what is measured is HTTP + pool + driver + JSON.
//
//     cd bench/reference-postgres-nio && swift build -c release
//     PORT=9183 POOL=20 DATABASE_URL='postgresql://postgres@/surveyd_prof?host=%2Fpath%2Fto%2Fsocketdir&port=5432' \
//         .build/release/reference-server
//
//     GET /health            → 200 {"status":"ok"}
//     GET /surveys           → the query as an unnamed statement (parse/bind/execute each time)
//     GET /surveys-prepared  → the same query as a named prepared statement (parsed once per connection)
//     Both need an `Authorization` header (any value); 401 without one.
import Hummingbird
import NIOCore
import PostgresNIO

// MARK: Configuration (environment)

let environment = Environment()
let port = environment.get("PORT").flatMap(Int.init) ?? 9183
let poolSize = max(1, environment.get("POOL").flatMap(Int.init) ?? 20)
let databaseURL = environment.get("DATABASE_URL")
    ?? "postgresql://postgres@/surveyd_prof?host=%2Fwork%2Fmain%2F.local%2Fpg%2Fbench%2Frun&port=5432"

var logger = Logger(label: "reference-server")
logger.logLevel = environment.get("LOG_LEVEL").flatMap(Logger.Level.init(rawValue:)) ?? .info

/// The parts of a libpq-style URL that this server needs, parsed by hand (postgres-nio has no
/// URL parser for a Unix socket given as `?host=/dir`, libpq's way). Query parameters
/// (`host`, `port`, `user`, `password`, `dbname`) override the authority, as in libpq.
struct DatabaseURL {
    var user = "postgres"
    var password: String?
    var database: String?
    var host = ""
    var port = 5432

    init(_ url: String) throws {
        guard let schemeEnd = url.range(of: "://"),
              ["postgresql", "postgres"].contains(url[..<schemeEnd.lowerBound]) else {
            throw ConfigurationError("DATABASE_URL must start with postgresql://")
        }
        var rest = url[schemeEnd.upperBound...]
        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        // authority "/" database — userinfo cannot hold an unencoded "/", so the first one ends it.
        var authority = rest
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            let name = rest[rest.index(after: slash)...]
            if !name.isEmpty { database = Self.decode(name) }
        }
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            authority = authority[authority.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                user = Self.decode(userInfo[..<colon])
                password = Self.decode(userInfo[userInfo.index(after: colon)...])
            } else if !userInfo.isEmpty {
                user = Self.decode(userInfo)
            }
        }
        if let colon = authority.lastIndex(of: ":") {
            host = Self.decode(authority[..<colon])
            port = Int(authority[authority.index(after: colon)...]) ?? port
        } else {
            host = Self.decode(authority)
        }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            let value = parts.count > 1 ? Self.decode(parts[1]) : ""
            switch parts[0] {
            case "host": host = value
            case "port": port = Int(value) ?? port
            case "user": user = value
            case "password": password = value
            case "dbname": database = value
            default: break  // sslmode, application_name, …: not needed for a local benchmark
            }
        }
    }

    /// Percent-decoding (and nothing else: a `+` stays a `+`, as libpq reads it).
    static func decode(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        var utf8 = text.utf8[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "%"), utf8.count >= 2,
               let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(value)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    var clientConfiguration: PostgresClient.Configuration {
        // libpq reads a host starting with "/" as the directory of the server's Unix socket.
        if host.isEmpty || host.hasPrefix("/") {
            let directory = host.isEmpty ? "/var/run/postgresql" : host
            return .init(unixSocketPath: "\(directory)/.s.PGSQL.\(port)", username: user, password: password, database: database)
        }
        return .init(host: host, port: port, username: user, password: password, database: database, tls: .disable)
    }
}

struct ConfigurationError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

var configuration = try DatabaseURL(databaseURL).clientConfiguration
configuration.options.maximumConnections = poolSize
// As the product's pool: a couple of connections kept open, the rest opened on demand
// (postgres-nio requires minimum < maximum).
configuration.options.minimumConnections = max(0, min(2, poolSize - 1))
// The role, once per connection and at no cost per request: PostgreSQL applies `-c` options of
// the startup message as the session starts, exactly like a `SET ROLE survey_app` run first on
// each new connection (which is what the product does), so row-level security applies to
// every query. (postgres-nio 1.33.2 has no per-connection setup hook in PostgresClient.)
// `jit = off` is the product's session setting too; this query is far too cheap to be JIT
// compiled either way, it is only there to keep the two sessions alike.
configuration.options.additionalStartupParameters = [("options", "-c role=survey_app -c jit=off")]

let client = PostgresClient(configuration: configuration, backgroundLogger: logger)

// MARK: The query

struct Question {
    var id: Int64
    var body: String
    var language: String
}

struct Survey {
    var id: Int64
    var name: String
    var interactionType: String
    var questions: [Question]
}

typealias SurveyRow = (Int64, String, String, Int64?, String?, String?)

/// The company whose surveys are read (`COMPANY_ID`, default 1).
let companyID: Int64 = environment.get("COMPANY_ID").flatMap(Int64.init) ?? 1
let pageSize: Int64 = 50

/// The product's query, by interpolation: PostgresQuery turns each `\(…)` into a `$n` bind
/// (so `company` is bound twice, $1 and $4, as in the product), and postgres-nio sends it as
/// an unnamed statement: Parse/Bind/Describe/Execute/Sync every time.
func surveysQuery(company: Int64, after: Int64?, limit: Int64) -> PostgresQuery {
    """
    SELECT s.survey_id, s.name, s.interaction_type, q.question_id, q.body, q.language
      FROM (SELECT survey_id, name, interaction_type FROM surveys
             WHERE company_id = \(company) AND survey_id > coalesce(\(after)::bigint, 0)
             ORDER BY survey_id LIMIT \(limit)) AS s
      LEFT JOIN questions AS q ON q.company_id = \(company) AND q.survey_id = s.survey_id
     ORDER BY s.survey_id
    """
}

/// The same query as a named prepared statement: postgres-nio parses it once per connection
/// (on first use) and then only sends Bind/Execute.
struct SurveysStatement: PostgresPreparedStatement {
    static let sql = """
        SELECT s.survey_id, s.name, s.interaction_type, q.question_id, q.body, q.language
          FROM (SELECT survey_id, name, interaction_type FROM surveys
                 WHERE company_id = $1 AND survey_id > coalesce($2::bigint, 0)
                 ORDER BY survey_id LIMIT $3) AS s
          LEFT JOIN questions AS q ON q.company_id = $1 AND q.survey_id = s.survey_id
         ORDER BY s.survey_id
        """
    // Explicit, so a NULL `after` on a connection's first use cannot leave $2 untyped.
    static let bindingDataTypes: [PostgresDataType] = [.int8, .int8, .int8]
    typealias Row = SurveyRow

    var company: Int64
    var after: Int64?
    var limit: Int64

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 3)
        bindings.append(company)
        bindings.append(after)
        bindings.append(limit)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {
        try row.decode(Row.self)
    }
}

/// One tenant read, as the product runs it: a read-only transaction scoped to the company,
/// on one pooled connection. Each statement is its own round trip: postgres-nio has no
/// pipelining, and its `query` always uses the extended protocol, so one message cannot
/// carry several statements. `connection.withTransaction` is not used because it sends a
/// plain `BEGIN;` and the product's reads are `BEGIN READ ONLY`.
func listSurveys(prepared: Bool, logger: Logger) async throws -> [Survey] {
    let rows: [SurveyRow] = try await client.withConnection { connection in
        try await connection.query("BEGIN READ ONLY", logger: logger)
        do {
            // A setting takes no parameters: the id is spliced in, as the product does.
            try await connection.query(PostgresQuery(unsafeSQL: "SET LOCAL app.company_id = '\(companyID)'"), logger: logger)
            try await connection.query("SET LOCAL statement_timeout = 30000", logger: logger)
            var rows: [SurveyRow] = []
            if prepared {
                let statement = SurveysStatement(company: companyID, after: nil, limit: pageSize)
                for try await row in try await connection.execute(statement, logger: logger) {
                    rows.append(row)
                }
            } else {
                let sequence = try await connection.query(
                    surveysQuery(company: companyID, after: nil, limit: pageSize), logger: logger)
                for try await row in sequence.decode(SurveyRow.self) {
                    rows.append(row)
                }
            }
            try await connection.query("COMMIT", logger: logger)
            return rows
        } catch {
            // An error leaves the transaction open and aborted; close it before the
            // connection goes back to the pool.
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
        }
    }
    // Rows come ordered by survey; a survey without questions has one row of NULLs.
    var surveys: [Survey] = []
    for (surveyID, name, interactionType, questionID, body, language) in rows {
        if surveys.last?.id != surveyID {
            surveys.append(Survey(id: surveyID, name: name, interactionType: interactionType, questions: []))
        }
        if let questionID, let body, let language {
            surveys[surveys.count - 1].questions.append(Question(id: questionID, body: body, language: language))
        }
    }
    for index in surveys.indices {
        surveys[index].questions.sort { $0.id < $1.id }
    }
    return surveys
}

// MARK: JSON (hand-written)

// Hand-written straight into a ByteBuffer, as the product writes its JSON by hand too:
// no Codable/JSONEncoder (Foundation) cost on either side of the comparison.
extension ByteBuffer {
    mutating func writeJSONString(_ text: String) {
        writeInteger(UInt8(ascii: "\""))
        if !text.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            writeString(text)  // the common case: nothing to escape
        } else {
            let hex = Array("0123456789abcdef".utf8)
            for byte in text.utf8 {
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                    writeInteger(UInt8(ascii: "\\"))
                    writeInteger(byte)
                case UInt8(ascii: "\n"): writeStaticString("\\n")
                case UInt8(ascii: "\r"): writeStaticString("\\r")
                case UInt8(ascii: "\t"): writeStaticString("\\t")
                case ..<0x20:
                    writeStaticString("\\u00")
                    writeInteger(hex[Int(byte >> 4)])
                    writeInteger(hex[Int(byte & 0xF)])
                default:
                    writeInteger(byte)
                }
            }
        }
        writeInteger(UInt8(ascii: "\""))
    }
}

/// The product's body, byte for byte: `[{"id":1,"name":…,"interactionType":…,
/// "questions":[{"id":…,"body":…,"language":…}]}]`, ids as numbers. (The product names the
/// next page in a `Link` header, only when the page is full; these 5 surveys never fill one.)
func surveysJSON(_ surveys: [Survey]) -> ByteBuffer {
    var buffer = ByteBufferAllocator().buffer(capacity: 256 + surveys.count * 512)
    buffer.writeStaticString("[")
    for (index, survey) in surveys.enumerated() {
        if index > 0 { buffer.writeStaticString(",") }
        buffer.writeStaticString(#"{"id":"#)
        buffer.writeString(String(survey.id))
        buffer.writeStaticString(#","name":"#)
        buffer.writeJSONString(survey.name)
        buffer.writeStaticString(#","interactionType":"#)
        buffer.writeJSONString(survey.interactionType)
        buffer.writeStaticString(#","questions":["#)
        for (questionIndex, question) in survey.questions.enumerated() {
            if questionIndex > 0 { buffer.writeStaticString(",") }
            buffer.writeStaticString(#"{"id":"#)
            buffer.writeString(String(question.id))
            buffer.writeStaticString(#","body":"#)
            buffer.writeJSONString(question.body)
            buffer.writeStaticString(#","language":"#)
            buffer.writeJSONString(question.language)
            buffer.writeStaticString("}")
        }
        buffer.writeStaticString("]}")
    }
    buffer.writeStaticString("]")
    return buffer
}

// MARK: HTTP

let jsonHeaders: HTTPFields = [.contentType: "application/json; charset=utf-8"]

let router = Router()
router.get("/health") { _, context -> Response in
    Response(status: .ok, headers: jsonHeaders, body: .init(byteBuffer: ByteBuffer(string: #"{"status":"ok"}"#)))
}

/// Only the header's presence is checked: token lookup is not part of this reference.
func surveysRoute(prepared: Bool) -> @Sendable (Request, BasicRequestContext) async throws -> Response {
    { request, context in
        guard request.headers[.authorization] != nil else { throw HTTPError(.unauthorized) }
        let surveys = try await listSurveys(prepared: prepared, logger: context.logger)
        let body = surveysJSON(surveys)
        return Response(status: .ok, headers: jsonHeaders, body: .init(byteBuffer: body))
    }
}
router.get("/surveys", use: surveysRoute(prepared: false))
router.get("/surveys-prepared", use: surveysRoute(prepared: true))

// The client is a ServiceLifecycle service: the application's ServiceGroup runs `client.run()`
// (the pool's background work) beside the HTTP server, and shuts both down on SIGINT/SIGTERM.
// Both share NIO's singleton event loop group (one thread per core).
let app = Application(
    router: router,
    configuration: .init(address: .hostname("127.0.0.1", port: port)),
    services: [client],
    logger: logger
)
try await app.runService()
