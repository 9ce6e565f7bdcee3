import Foundation
import Logging
import Metrics
import Prometheus
import Telemetry
import Testing

@Suite struct TextLogLinesTests {
    @Test func oneLinePerEventWithSortedMetadataAfterTheMessage() {
        let sink = LogSink.memory()
        var logger = Logger(label: "surveyd.test") { LineLogHandler(label: $0, format: .text, sink: sink) }
        logger[metadataKey: "request_id"] = "abc"
        logger.info("two\nlines\u{1B}[31m", metadata: ["status": .stringConvertible(201), "b": "x\ty"])
        logger.debug("not at info")
        #expect(sink.lines.count == 1)
        let line = sink.lines.first ?? ""
        #expect(line.hasSuffix(" info surveyd.test: two\\nlines\\x1b[31m b=x\\ty request_id=abc status=201\n"), "\(line)")
        #expect(line.filter { $0 == "\n" }.count == 1)
        #expect(line.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z .*\n/) != nil, "\(line)")
    }
}

@Suite struct JSONLogLinesTests {
    func log(_ body: (inout Logger) -> Void) -> [[String: Any]] {
        let sink = LogSink.memory()
        var logger = Logger(label: "surveyd.test") { LineLogHandler(label: $0, format: .json, sink: sink) }
        body(&logger)
        return sink.lines.map { line in
            #expect(line.hasSuffix("}\n") && line.filter { $0 == "\n" }.count == 1, "one line per event: \(line)")
            return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
        }
    }

    @Test func oneObjectPerEventWithMetadataAtTheTop() throws {
        let lines = log { logger in
            logger[metadataKey: "request_id"] = "abc"
            logger.info("hello \"world\"\nsecond line", metadata: ["status": .stringConvertible(201), "nested": ["a": ["1", "2"]]])
            logger.debug("not at info")
        }
        #expect(lines.count == 1)
        let line = try #require(lines.first)
        #expect(line["msg"] as? String == "hello \"world\"\nsecond line")
        #expect(line["level"] as? String == "info")
        #expect(line["logger"] as? String == "surveyd.test")
        #expect(line["request_id"] as? String == "abc")
        #expect(line["status"] as? String == "201")
        #expect((line["nested"] as? [String: Any])?["a"] as? [String] == ["1", "2"])
        let timestamp = try #require(line["ts"] as? String)
        #expect(timestamp.count == 24 && timestamp.hasSuffix("Z"), "\(timestamp)")
        let parsed = try #require(try? Date(timestamp, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true)))
        #expect(abs(parsed.timeIntervalSinceNow) < 60)
    }

    @Test func reservedNamesAndControlCharactersSurvive() throws {
        let lines = log { logger in
            logger.warning("\u{0}\u{1b}[31mred\u{2028}", metadata: ["msg": "shadow", "level": "x"])
        }
        let line = try #require(lines.first)
        #expect(line["msg"] as? String == "\u{0}\u{1b}[31mred\u{2028}")
        #expect(line["meta.msg"] as? String == "shadow")
        #expect(line["meta.level"] as? String == "x")
        #expect(line["level"] as? String == "warning")
    }

    @Test func concurrentEventsNeverInterleave() async throws {
        let sink = LogSink.memory()
        let logger = Logger(label: "surveyd.test") { LineLogHandler(label: $0, format: .json, sink: sink) }
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask { for index in 0..<200 { logger.info("event \(task)-\(index)") } }
            }
        }
        #expect(sink.lines.count == 1600)
        #expect(sink.lines.allSatisfy { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) != nil })
    }
}

@Suite struct PrometheusNamingTests {
    @Test func dottedNamesBecomeValidPrometheusNames() throws {
        let registry = PrometheusCollectorRegistry()
        let factory = PrometheusMetrics.makeFactory(registry: registry)
        let counter = factory.makeCounter(
            label: "hb.requests", dimensions: [("http.route", "/survey/1.0.0/surveys/{id}"), ("http.response.status_code", "200")])
        counter.increment(by: 2)
        let timer = factory.makeTimer(label: "http.server.request.duration", dimensions: [("http.route", "/health")])
        timer.recordNanoseconds(1_500_000)
        let text = String(decoding: PrometheusMetrics(registry: registry).exposition(), as: UTF8.self)
        #expect(text.contains(#"http_server_requests_total{http_route="/survey/1.0.0/surveys/{id}",http_response_status_code="200"} 2"#), "\(text)")
        #expect(text.contains(#"http_server_request_duration_bucket{http_route="/health",le="0.002"} 1"#), "\(text)")
        #expect(text.contains(#"http_server_request_duration_bucket{http_route="/health",le="0.001"} 0"#), "\(text)")
    }
}
