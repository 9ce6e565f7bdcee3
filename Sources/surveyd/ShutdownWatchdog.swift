import Foundation
import Logging
import ServiceLifecycle
import SurveyDomain
import UnixSignals

/// Ends the process when a graceful shutdown outlasts its grace period.
///
/// The service group is told to escalate to cancellation after the grace period
/// (`serviceGroup(_:grace:logger:)`), and every wait on the database has a limit; this
/// is the last resort for whatever still does not finish (a library call that ignores
/// cancellation), so that SIGTERM always ends the process, as an orchestrator expects
/// before it sends SIGKILL. It watches from a thread of its own, which no stuck task
/// can hold.
struct ShutdownWatchdog: Service {
    let grace: Duration
    /// Left to cancellation after the grace period, before the process is ended.
    let cancellation: Duration
    let logger: Logger

    func run() async throws {
        // Returns when the graceful shutdown begins (or the group is cancelled).
        try? await gracefulShutdown()
        let limit = grace + cancellation
        let logger = logger
        Thread.detachNewThread {
            Thread.sleep(forTimeInterval: limit.secondsValue)
            logger.critical("graceful shutdown did not end within its grace period; exiting", metadata: ["grace": "\(limit)"])
            _exit(1)
        }
    }
}

extension ServiceGroup {
    /// The process's services, shut down gracefully on SIGTERM or SIGINT within `grace`
    /// (then cancelled, and after a further moment ended by `ShutdownWatchdog`).
    static func bounded(
        _ services: [ServiceGroupConfiguration.ServiceConfiguration], grace: Duration, logger: Logger
    ) -> ServiceGroup {
        // Last, so that it hears of the shutdown first: services shut down in reverse order.
        let watchdog = ShutdownWatchdog(grace: grace, cancellation: .seconds(2), logger: logger)
        var configuration = ServiceGroupConfiguration(
            services: services + [.init(service: watchdog)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        configuration.maximumGracefulShutdownDuration = grace
        return ServiceGroup(configuration: configuration)
    }
}
