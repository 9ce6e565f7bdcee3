import Metrics

/// Gauges and counters through swift-metrics, labelled by application name only.
struct PoolMetrics: Sendable {
    let idle: Gauge
    let leased: Gauge
    let connecting: Gauge
    let waiting: Gauge
    let waitTime: Timer
    let timeouts: Counter
    let connectFailures: Counter
    /// Batches of reads sent, and the reads they carried: their ratio is the mean batch.
    let batches: Counter
    let batchedReads: Counter

    init(applicationName: String) {
        let dimensions = [("application", applicationName)]
        idle = Gauge(label: "postgres_pool_connections_idle", dimensions: dimensions)
        leased = Gauge(label: "postgres_pool_connections_in_use", dimensions: dimensions)
        connecting = Gauge(label: "postgres_pool_connections_opening", dimensions: dimensions)
        waiting = Gauge(label: "postgres_pool_waiting_requests", dimensions: dimensions)
        waitTime = Timer(label: "postgres_pool_wait_duration", dimensions: dimensions)
        timeouts = Counter(label: "postgres_pool_wait_timeouts_total", dimensions: dimensions)
        connectFailures = Counter(label: "postgres_pool_connect_failures_total", dimensions: dimensions)
        batches = Counter(label: "postgres_pool_read_batches_total", dimensions: dimensions)
        batchedReads = Counter(label: "postgres_pool_batched_reads_total", dimensions: dimensions)
    }

    func publish(_ statistics: PostgresClient.Statistics) {
        idle.record(statistics.idle)
        leased.record(statistics.leased)
        connecting.record(statistics.connecting)
        waiting.record(statistics.waiting)
    }
}
