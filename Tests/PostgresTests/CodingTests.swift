import Foundation
import Testing

@testable import Postgres

@Suite struct CodingTests {
    @Test func queriesBindValuesAsNumberedParameters() {
        let id = 7
        let name: String? = nil
        let query: PostgresQuery = "SELECT * FROM t WHERE a = \(id) AND b = \(name) AND c = \("x'y")"
        #expect(query.sql == "SELECT * FROM t WHERE a = $1 AND b = $2 AND c = $3")
        #expect(query.bindings == ["7", nil, "x'y"])
    }

    @Test func identifiersAreQuoted() {
        let query: PostgresQuery = "SELECT 1 FROM \(identifier: "we\"ird")"
        #expect(query.sql == "SELECT 1 FROM \"we\"\"ird\"")
        // The text depends on the name: not kept prepared.
        #expect(!query.isPreparable)
        let fixed: PostgresQuery = "SELECT \(1)::int"
        #expect(fixed.isPreparable)
    }

    @Test func arraysRoundTripThroughTheTextFormat() throws {
        let values = ["", "NULL", "a,b", "{x}", "q\"", "b\\s", "spa ce", "é"]
        let text = try #require(values.postgresText)
        #expect(try PostgresArrayParser.parse(text) == values)
        #expect(try PostgresArrayParser.parse("{a,NULL,\"NULL\"}") == ["a", nil, "NULL"])
        #expect(try PostgresArrayParser.parse("{}") == [])
        #expect(try PostgresArrayParser.parse(#"{"d\"e","back\\slash",é€😀,"a,b}"}"#) == ["d\"e", "back\\slash", "é€😀", "a,b}"])
        #expect(throws: PostgresError.self) { try PostgresArrayParser.parse("{a,}") }
        #expect(throws: PostgresError.self) { try PostgresArrayParser.parse("{a") }
        #expect(try PostgresArrayParser.parse("[0:1]={x,y}") == ["x", "y"])
        #expect(throws: PostgresError.self) { try PostgresArrayParser.parse("{{1,2},{3,4}}") }
        #expect(throws: PostgresError.self) { try PostgresArrayParser.parse("{\"unterminated}") }
    }

    @Test func timestampsParseEveryServerShape() throws {
        #expect(try Date(postgresText: "1970-01-01 00:00:00+00").timeIntervalSince1970 == 0)
        #expect(try Date(postgresText: "2026-11-29 11:22:11.5+00").timeIntervalSince1970 == 1_795_951_331.5)
        #expect(try Date(postgresText: "2026-11-29 12:22:11.5+01").timeIntervalSince1970 == 1_795_951_331.5)
        #expect(try Date(postgresText: "2026-11-29 06:52:11.5-04:30").timeIntervalSince1970 == 1_795_951_331.5)
        #expect(try Date(postgresText: "1969-12-31 23:59:59+00").timeIntervalSince1970 == -1)
        #expect(throws: PostgresError.self) { try Date(postgresText: "infinity") }
        #expect(throws: PostgresError.self) { try Date(postgresText: "2026-11-29") }
    }

    @Test func timestampsEncodeWithAnOffset() {
        #expect(Date(timeIntervalSince1970: 1_795_951_331.5).postgresText == "2026-11-29T11:22:11.500000+00:00")
        #expect(Date(timeIntervalSince1970: -0.25).postgresText == "1969-12-31T23:59:59.750000+00:00")
    }

    @Test func decodingErrorsSayWhichColumn() throws {
        let row = PostgresRow(columns: ["n"], values: ["abc"])
        let error = #expect(throws: PostgresError.self) { try row.decode((Int).self) }
        #expect(error?.code == .decoding)
        #expect(error?.debugDescription.contains("column 0 (n)") == true)
        let null = PostgresRow(columns: ["n"], values: [nil])
        #expect(try null.decode(Int?.self, column: "n") == nil)
        #expect(throws: PostgresError.self) { try null.decode((Int).self) }
    }
}
