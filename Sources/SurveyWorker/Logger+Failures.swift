import Logging
import SurveyStorage

extension Logger {
    /// Logs a failed cycle of a background loop, which tries again by itself: as a warning
    /// when the database is away or too slow (a restart, a failover: expected, and over in
    /// seconds), as an error otherwise (a bug, or something an operator must look at).
    /// Alerting on errors then means something.
    func cycleFailed(_ message: Logger.Message, error: any Error, metadata: Logger.Metadata = [:]) {
        var metadata = metadata
        metadata["error"] = "\(String(reflecting: error))"
        log(level: StorageFailure(error) == nil ? .error : .warning, message, metadata: metadata)
    }
}
