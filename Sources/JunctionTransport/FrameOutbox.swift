import JunctionCore
import NIOCore
import Synchronization

/// Why a frame could not be queued.
public struct OutboxClosed: Error, Sendable, CustomStringConvertible {
    public let peer: String
    public var description: String { "the link to \(peer) is closed; the message was not sent" }
}

/// The write side of one link, built for batching (PERFORMANCE.md): senders on any
/// thread append encoded frames to one pending buffer; the first append after a flush
/// schedules one flush on the event loop, which writes everything pending with a single
/// write and flush. A lone message goes out at once; under load, many frames share a
/// syscall. When the channel is not writable, senders that ask to wait are suspended
/// until it drains.
public final class FrameOutbox: Sendable {
    struct State: ~Copyable {
        var pending: ByteBuffer
        /// This link direction's compressor; nil when compression is off.
        var deflater: Deflater?
        var flushScheduled = false
        var closed = false
        var writable = true
        var waiters: [CheckedContinuation<Void, any Error>] = []
        var framesQueued = 0
        var bytesWritten = 0
    }

    /// What this link direction has carried so far.
    public struct Stats: Sendable, Hashable {
        /// Frames queued (message and control frames).
        public var frames: Int
        /// Bytes handed to the socket, frame headers included.
        public var bytes: Int
    }

    public var stats: Stats { state.withLock { Stats(frames: $0.framesQueued, bytes: $0.bytesWritten) } }

    let channel: any Channel
    let peer: String
    let state: Mutex<State>
    /// Pending bytes above which `waitUntilWritable` suspends even if the channel is writable.
    let highWaterMark: Int

    /// With `compression`, message frames whose payload exceeds its threshold are
    /// compressed by one deflater kept for this link direction.
    public init(channel: any Channel, peer: String, compression: CompressionSettings? = nil, highWaterMark: Int = 4 << 20) {
        self.channel = channel
        self.peer = peer
        self.highWaterMark = highWaterMark
        self.state = Mutex(State(pending: channel.allocator.buffer(capacity: 64 << 10), deflater: compression.map(Deflater.init)))
    }

    /// Appends one frame whose payload `body` writes in place, compressing the payload
    /// when it is `compressible` and larger than the threshold. On a thrown error
    /// nothing is appended. Returns true when the link is backed up.
    @discardableResult
    public func enqueueFrame<E: Error>(
        kind: UInt8, streamKey: UInt32, compressible: Bool, body: (inout ByteBuffer) throws(E) -> Void
    ) throws(any Error) -> Bool {
        try enqueue { (buffer, deflater) throws(E) in
            let start = buffer.writerIndex
            buffer.writeMultipleIntegers(UInt32(0), kind, UInt8(0), streamKey)
            do throws(E) {
                try body(&buffer)
            } catch {
                buffer.moveWriterIndex(to: start)
                throw error
            }
            let payloadStart = start + Frame.prefixSize
            let payloadSize = buffer.writerIndex - payloadStart
            if compressible, let deflater, payloadSize > deflater.settings.threshold {
                let flags = deflater.compress(&buffer, from: payloadStart, count: payloadSize)
                buffer.setInteger(flags, at: start + 4 + 1)
            }
            buffer.setInteger(UInt32(buffer.writerIndex - start - 4), at: start)
        }
    }

    /// Encodes one or more frames into the pending buffer with `body` and makes sure a
    /// flush is scheduled. Frames appended by one call stay contiguous and in order.
    /// Returns true when the link is backed up: the caller should then
    /// `waitUntilWritable()` before sending more.
    @discardableResult
    public func enqueue<E: Error>(_ body: (inout ByteBuffer, Deflater?) throws(E) -> Void) throws(any Error) -> Bool {
        let (schedule, backedUp) = try state.withLock { (state) throws(any Error) -> (Bool, Bool) in
            guard !state.closed else { throw OutboxClosed(peer: peer) }
            try body(&state.pending, state.deflater)
            state.framesQueued += 1
            let backedUp = !state.writable || state.pending.readableBytes > highWaterMark
            guard !state.flushScheduled else { return (false, backedUp) }
            state.flushScheduled = true
            return (true, backedUp)
        }
        if schedule {
            channel.eventLoop.execute { self.flush() }
        }
        return backedUp
    }

    /// Suspends while the link is backed up, so a fast producer cannot grow memory
    /// without bound. Returns at once in the common case.
    public func waitUntilWritable() async throws {
        let mustWait = try state.withLock { (state) throws(OutboxClosed) -> Bool in
            guard !state.closed else { throw OutboxClosed(peer: peer) }
            return !state.writable || state.pending.readableBytes > highWaterMark
        }
        guard mustWait else { return }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let resumeNow = state.withLock { state -> Result<Void, any Error>? in
                if state.closed { return .failure(OutboxClosed(peer: peer)) }
                if state.writable && state.pending.readableBytes <= highWaterMark { return .success(()) }
                state.waiters.append(continuation)
                return nil
            }
            if let resumeNow { continuation.resume(with: resumeNow) }
        }
    }

    /// Writes everything pending with one write and one flush. Runs on the event loop.
    func flush() {
        let batch = state.withLock { state -> ByteBuffer? in
            state.flushScheduled = false
            guard !state.closed, state.pending.readableBytes > 0 else { return nil }
            let batch = state.pending
            state.pending = channel.allocator.buffer(capacity: max(64 << 10, batch.readableBytes))
            state.bytesWritten += batch.readableBytes
            return batch
        }
        guard let batch else { return }
        channel.writeAndFlush(batch, promise: nil)
    }

    /// Tracks the channel's writability; call from `channelWritabilityChanged`.
    public func writabilityChanged(_ writable: Bool) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            state.writable = writable
            guard writable else { return [] }
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Refuses further frames and fails waiting senders. Pending frames are dropped
    /// unless `flushPending`, in which case they are written first.
    public func close(flushPending: Bool) {
        let (waiters, batch) = state.withLock { state -> ([CheckedContinuation<Void, any Error>], ByteBuffer?) in
            let batch = flushPending && !state.closed && state.pending.readableBytes > 0 ? state.pending : nil
            state.bytesWritten += batch?.readableBytes ?? 0
            state.closed = true
            state.pending.clear()
            defer { state.waiters = [] }
            return (state.waiters, batch)
        }
        if let batch { channel.writeAndFlush(batch, promise: nil) }
        for waiter in waiters { waiter.resume(throwing: OutboxClosed(peer: peer)) }
    }
}
