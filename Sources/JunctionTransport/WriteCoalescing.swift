import NIOCore

/// The write-coalescing rule shared by native links and Erlang connections: a write
/// scheduled within `window` of the last one waits until the window has passed, so a
/// steady stream shares writes; a write after a quiet spell goes at once.
public struct WriteCoalescing: Sendable {
    public let window: TimeAmount
    /// When the last batch was written; nil before the first.
    var lastFlush: NIODeadline?

    public init(window: TimeAmount) { self.window = window }

    /// When a flush scheduled `now` should run; nil for at once.
    public func due(now: NIODeadline) -> NIODeadline? {
        guard window > .zero, let lastFlush, lastFlush + window > now else { return nil }
        return lastFlush + window
    }

    public mutating func flushed(at now: NIODeadline) { lastFlush = now }
}

extension EventLoop {
    /// Runs `flush` at `due`, or at once when nil.
    public func scheduleFlush(at due: NIODeadline?, _ flush: @escaping @Sendable () -> Void) {
        if let due {
            scheduleTask(deadline: due, flush)
        } else {
            execute(flush)
        }
    }
}
