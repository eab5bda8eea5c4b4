import JunctionCore
import JunctionTerm
import JunctionTransport
import NIOCore
import Synchronization

/// An established Erlang distribution connection. Sends from any thread are encoded into
/// one pending buffer and written with one write and flush per batch on the event loop.
public final class ErlangConnection: Sendable, CustomStringConvertible {
    public enum Direction: String, Sendable {
        case incoming, outgoing
    }

    public let peer: NodeName
    public let stack: String
    public let direction: Direction
    public let negotiated: ErlangHandshakeResult
    public let remoteAddress: String
    public let channel: any Channel
    let writer: Mutex<Writer>
    let highWaterMark = 4 << 20

    struct Writer: ~Copyable {
        var encoder: DistributionEncoder
        var pending = ByteBuffer()
        var flushScheduled = false
        var closed = false
        /// Set on every write; the tick timer reads it.
        var wroteSinceTick = false
        var waiters: [CheckedContinuation<Void, any Error>] = []
        var bytesWritten = 0
        var messagesQueued = 0
        /// Messages in `pending`.
        var pendingMessages = 0
        /// This side asked to close (`close` or `abort`): the end is not a loss.
        var closeRequested = false
        /// The stack's `writeCoalescing`.
        var coalescing: WriteCoalescing
    }

    init(peer: NodeName, stack: String, direction: Direction, negotiated: ErlangHandshakeResult, channel: any Channel, coalescing: TimeAmount) {
        self.peer = peer
        self.stack = stack
        self.direction = direction
        self.negotiated = negotiated
        self.channel = channel
        self.remoteAddress = channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "unknown"
        self.writer = Mutex(Writer(encoder: DistributionEncoder(flags: negotiated.flags), coalescing: WriteCoalescing(window: coalescing)))
    }

    public var description: String { "\(direction) erlang connection to \(peer) at \(remoteAddress)" }

    /// What came in: messages, their bytes (packet headers included), and when the socket
    /// last read anything (ticks too). Updated once per read.
    struct Received {
        var messages = 0
        var bytes = 0
        var lastRead = NIODeadline.now()
    }
    let received = Mutex(Received())
    /// Messages delivered from the peer, for write coalescing.
    let activity = ConnectionActivity()

    /// Traffic so far, for status and metrics.
    public var traffic: (messagesSent: Int, bytesSent: Int, pendingBytes: Int, messagesReceived: Int, bytesReceived: Int, secondsSinceLastRead: Double) {
        let sent = writer.withLock { ($0.messagesQueued, $0.bytesWritten, $0.pending.readableBytes) }
        let inbound = received.withLock { $0 }
        return (sent.0, sent.1, sent.2, inbound.messages, inbound.bytes, Double((NIODeadline.now() - inbound.lastRead).nanoseconds) / 1e9)
    }

    /// Bytes of messages handed to the socket so far (ticks not counted).
    public var bytesSent: Int { writer.withLock { $0.bytesWritten } }

    /// Queues one message; returns true when the connection is backed up (call
    /// `waitUntilWritable`).
    @discardableResult
    public func send(_ message: DistributionMessage) throws -> Bool {
        let (schedule, due, backedUp) = try writer.withLock { (writer) throws(any Error) -> (Bool, NIODeadline?, Bool) in
            guard !writer.closed else { throw OutboxClosed(peer: peer.description) }
            let start = writer.pending.writerIndex
            do {
                try writer.encoder.encode(message, into: &writer.pending)
            } catch {
                writer.pending.moveWriterIndex(to: start)
                throw error
            }
            writer.messagesQueued += 1
            writer.pendingMessages += 1
            let backedUp = writer.pending.readableBytes > highWaterMark
            guard !writer.flushScheduled else { return (false, nil, backedUp) }
            writer.flushScheduled = true
            return (true, backedUp ? nil : writer.coalescing.due(now: channel.eventLoop.now, deliveries: activity.deliveries), backedUp)
        }
        if schedule { channel.eventLoop.scheduleFlush(at: due) { self.flush() } }
        return backedUp
    }

    /// Suspends while more than the high-water mark waits to be written or the socket is
    /// not writable; throws `OutboxClosed` once the connection is closed, like a native
    /// slot, so a sender never takes a close for room.
    public func waitUntilWritable() async throws {
        guard isBackedUp else { return }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let resumeNow = writer.withLock { writer -> Result<Void, any Error>? in
                if writer.closed { return .failure(OutboxClosed(peer: peer.description)) }
                if writer.pending.readableBytes <= highWaterMark && channel.isWritable { return .success(()) }
                writer.waiters.append(continuation)
                return nil
            }
            if let resumeNow { continuation.resume(with: resumeNow) }
        }
    }

    /// True while senders must wait: the socket takes no more, or more than the
    /// high-water mark waits to be written.
    var isBackedUp: Bool {
        writer.withLock { $0.pending.readableBytes > highWaterMark } || !channel.isWritable
    }

    /// Writes what is pending and wakes the senders waiting for room. Runs on the event
    /// loop, also when the socket becomes writable again. While the socket takes no more
    /// (a peer that does not read), what is pending stays pending, so it grows to the
    /// high-water mark and holds the senders back instead of filling memory; `closing`
    /// writes it anyway.
    func flush(closing: Bool = false) {
        let (batch, waiters) = writer.withLock { writer -> (ByteBuffer?, [CheckedContinuation<Void, any Error>]) in
            guard closing || channel.isWritable else {
                // The writability change flushes; until then no send schedules one.
                writer.flushScheduled = true
                return (nil, [])
            }
            writer.flushScheduled = false
            var batch: ByteBuffer?
            if writer.pending.readableBytes > 0, !writer.closed {
                batch = writer.pending
                writer.pending = channel.allocator.buffer(capacity: 4096)
                writer.wroteSinceTick = true
                writer.bytesWritten += batch!.readableBytes
                writer.coalescing.flushed(at: channel.eventLoop.now, messages: writer.pendingMessages, deliveries: activity.deliveries)
                writer.pendingMessages = 0
            }
            guard channel.isWritable else { return (batch, []) }
            defer { writer.waiters = [] }
            return (batch, writer.waiters)
        }
        if let batch {
            channel.writeAndFlush(batch, promise: nil)
            BusyPoll.touch(channel.eventLoop)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// A tick (an empty packet), unless something else was written since the last check.
    func tickIfIdle() {
        let idle = writer.withLock { writer -> Bool in
            defer { writer.wroteSinceTick = false }
            return !writer.wroteSinceTick && !writer.flushScheduled
        }
        if idle { writeTick() }
    }

    func writeTick() {
        var tick = channel.allocator.buffer(capacity: 4)
        tick.writeInteger(UInt32(0))
        channel.writeAndFlush(tick, promise: nil)
    }

    var closeRequested: Bool { writer.withLock { $0.closeRequested } }

    func markClosed() {
        let waiters = writer.withLock { writer -> [CheckedContinuation<Void, any Error>] in
            writer.closed = true
            defer { writer.waiters = [] }
            return writer.waiters
        }
        for waiter in waiters { waiter.resume(throwing: OutboxClosed(peer: peer.description)) }
    }

    /// Closes at once, dropping what is pending (a blocked peer).
    public func abort() {
        writer.withLock { $0.closeRequested = true }
        markClosed()
        channel.close(promise: nil)
    }

    /// Writes what is pending, then closes.
    public func close() {
        writer.withLock { $0.closeRequested = true }
        channel.eventLoop.execute {
            self.flush(closing: true)
            self.channel.close(promise: nil)
        }
    }

    public func closeAndWait() async {
        close()
        await waitUntilClosed()
    }

    /// Returns once the connection is closed, by either side or by a lost peer.
    public func waitUntilClosed() async {
        try? await channel.closeFuture.get()
    }
}
