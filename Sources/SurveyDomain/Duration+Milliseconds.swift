extension Duration {
    /// Whole milliseconds, rounded up: a positive duration never becomes 0, which
    /// PostgreSQL's timeouts read as "no timeout at all".
    public var roundedUpMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        let fraction = attoseconds / 1_000_000_000_000_000 + (attoseconds % 1_000_000_000_000_000 > 0 ? 1 : 0)
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        return overflow ? (seconds < 0 ? .min : .max) : product + fraction
    }

    /// The duration in seconds, fractions included (what SQL intervals and lag checks take).
    public var secondsValue: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
