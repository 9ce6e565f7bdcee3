import NIOPosix

extension NIOThreadPool {
    /// Runs blocking work on the pool. Unlike `runIfActive`, work already submitted runs even
    /// if the calling task is cancelled: a `PQfinish` or a migration must not be skipped.
    func runBlocking<T: Sendable>(_ body: @escaping @Sendable () throws(PostgresError) -> T) async throws(PostgresError) -> T {
        let result: Result<T, PostgresError> = await withCheckedContinuation { continuation in
            self.submit { state in
                switch state {
                case .active:
                    continuation.resume(returning: Result { () throws(PostgresError) -> T in try body() })
                case .cancelled:
                    continuation.resume(returning: .failure(PostgresError(code: .poolShutDown, message: "thread pool is shut down")))
                }
            }
        }
        return try result.get()
    }
}
