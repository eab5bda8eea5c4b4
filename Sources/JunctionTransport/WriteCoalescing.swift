import NIOCore

/// The write-coalescing rule shared by native links and Erlang connections: while a
/// link is busy (its last write carried more than one message), a write scheduled within
/// `window` of the last one waits until the window has passed, so a steady stream shares
/// writes and the peer's wake-ups. A write after a quiet spell, or after a write of one
/// message (a request, an answer, a trickle), goes at once: a round trip never waits.
public struct WriteCoalescing: Sendable {
    public let window: TimeAmount
    /// When the last batch was written; nil before the first.
    var lastFlush: NIODeadline?
    /// Messages in the last batch.
    var lastBatch = 0

    public init(window: TimeAmount) { self.window = window }

    /// When a flush scheduled `now` should run; nil for at once.
    public func due(now: NIODeadline) -> NIODeadline? {
        guard window > .zero, lastBatch > 1, let lastFlush, lastFlush + window > now else { return nil }
        return lastFlush + window
    }

    public mutating func flushed(at now: NIODeadline, messages: Int) {
        lastFlush = now
        lastBatch = messages
    }
}

extension EventLoop {
    /// Runs `flush` at `due`, or at once when nil: handed to the loop's next poll step
    /// when it is polling (no wake-up needed).
    public func scheduleFlush(at due: NIODeadline?, _ flush: @escaping @Sendable () -> Void) {
        if let due {
            scheduleTask(deadline: due, flush)
        } else if inEventLoop || !BusyPoll.handOff(flush, to: self) {
            execute(flush)
        }
    }
}
