import NIOCore

/// Runs a task's jobs on one NIO event loop: the connection's own.
///
/// A connection's requests are handled in a task; by default its jobs run on Swift's
/// cooperative pool, so each request crossed threads four times: the event loop hands the
/// request to the pool, the pool sends the statement, the database reactor's thread resumes
/// the task on the pool, and the pool hands the response back to the event loop. Under
/// load, those hand-offs (thread wake-ups and context switches) were the largest single
/// cost of a short request (`docs/BENCHMARKS.md`, HTTP run 4). With the connection's task
/// preferring its event loop, reading, handling and writing happen on one thread, and a
/// database answer resumes the task there directly.
///
/// Nothing in a request's handling blocks its thread: statements go through the
/// non-blocking socket and the reactor; what blocks in libpq (connecting, closing) runs on
/// the database's own thread pool.
final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        eventLoop.execute { job.runSynchronously(on: executor) }
    }
}
