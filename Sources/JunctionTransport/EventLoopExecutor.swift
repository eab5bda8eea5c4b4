import NIOCore

/// Runs Swift tasks on a NIO event loop. A process whose task prefers this executor
/// runs on the same thread as its links: a delivery wakes it without a thread hop, and
/// its sends are flushed by the loop it is already on. That halves a round trip; for
/// bulk throughput the default executor spreads the work over more cores.
public final class EventLoopExecutor: TaskExecutor, Sendable {
    let loop: any EventLoop

    public init(_ loop: any EventLoop) {
        self.loop = loop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unownedJob = UnownedJob(job)
        loop.execute {
            unownedJob.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
