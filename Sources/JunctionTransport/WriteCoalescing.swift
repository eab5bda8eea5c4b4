import NIOCore
import Synchronization

/// The messages one connection has delivered, counted across all its links. Write
/// coalescing reads it to tell a conversation (something came back since the last
/// write: an answer, a call) from a one-way stream (nothing did).
public final class ConnectionActivity: Sendable {
    let delivered = Atomic<UInt64>(0)

    public init() {}

    /// Call before handing received messages on, so a sender woken by them sees the count.
    public func noteDelivery() { delivered.add(1, ordering: .relaxed) }

    public var deliveries: UInt64 { delivered.load(ordering: .relaxed) }
}

/// The write-coalescing rule shared by native links and Erlang connections. A write
/// scheduled within `window` of the link's last one waits until the window has passed
/// when the link is busy (its last write carried more than one message) or streams one
/// way (its connection delivered nothing since that write), so a steady stream shares
/// writes and the peer's wake-ups. A write after a quiet spell, or one that answers or
/// follows something received since the last write, goes at once: a round trip never
/// waits.
public struct WriteCoalescing: Sendable {
    public let window: TimeAmount
    /// When the last batch was written; nil before the first.
    var lastFlush: NIODeadline?
    /// Messages in the last batch.
    var lastBatch = 0
    /// The connection's deliveries when the last batch was written.
    var deliveriesAtLastFlush: UInt64 = 0

    public init(window: TimeAmount) { self.window = window }

    /// When a flush scheduled `now`, with the connection at `deliveries`, should run;
    /// nil for at once.
    public func due(now: NIODeadline, deliveries: UInt64) -> NIODeadline? {
        guard window > .zero, let lastFlush, lastFlush + window > now, lastBatch > 1 || deliveries == deliveriesAtLastFlush else { return nil }
        return lastFlush + window
    }

    public mutating func flushed(at now: NIODeadline, messages: Int, deliveries: UInt64) {
        lastFlush = now
        lastBatch = messages
        deliveriesAtLastFlush = deliveries
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
