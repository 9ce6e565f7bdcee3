import Logging
import ServiceLifecycle
import SurveyStorage

/// The SMS worker. Until the sending pipeline lands it has nothing to send: it starts,
/// says so, and waits for a graceful shutdown like any other service.
public struct Worker: Service {
    let database: Database
    let logger: Logger

    public init(database: Database, logger: Logger) {
        self.database = database
        self.logger = logger
    }

    public func run() async throws {
        logger.info("worker started; there is no SMS queue yet, waiting for shutdown")
        try? await gracefulShutdown()
        logger.info("worker stopped")
    }
}
