import CoreMetrics
import Prometheus

/// The process's metrics, exposed in Prometheus' text format at `/metrics`.
public struct PrometheusMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    /// Makes the registry the backend of swift-metrics for the whole process (once).
    public static func bootstrap() -> PrometheusMetrics {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(makeFactory(registry: registry))
        return PrometheusMetrics(registry: registry)
    }

    /// A factory over `registry` with this service's names and buckets.
    public static func makeFactory(registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        // A request here takes milliseconds; the default buckets start at 5 ms.
        factory.defaultDurationHistogramBuckets = [
            .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(20), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
            .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30),
        ]
        factory.nameAndLabelSanitizer = { name, labels in
            (sanitizedName(name), labels.map { (sanitizedName($0.0), $0.1) })
        }
        return factory
    }

    /// The exposition, as served at `/metrics`.
    public func exposition() -> [UInt8] { registry.emitToBuffer() }

    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
}

/// Prometheus names are `[a-zA-Z_:][a-zA-Z0-9_:]*`; swift-metrics libraries use dots
/// (Hummingbird's `http.server.request.duration`). Counters get the conventional `_total`.
func sanitizedName(_ name: String) -> String {
    let renamed = renames[name] ?? name
    var out = ""
    for (index, character) in renamed.unicodeScalars.enumerated() {
        let valid = ("a"..."z").contains(character) || ("A"..."Z").contains(character) || character == "_"
            || character == ":" || (index > 0 && ("0"..."9").contains(character))
        out.unicodeScalars.append(valid ? character : "_")
    }
    return out
}

private let renames = [
    "hb.requests": "http_server_requests_total",
    "hb.request.errors": "http_server_request_errors_total",
]
