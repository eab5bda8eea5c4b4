import DequeModule
import JunctionCore
import NIOCore
import Synchronization

/// Why a frame could not be queued.
public struct OutboxClosed: Error, Sendable, CustomStringConvertible {
    public let peer: String
    public init(peer: String) { self.peer = peer }
    public var description: String { "the link to \(peer) is closed; the message was not sent" }
}

/// The write side of one slot of a connection, built for batching (PERFORMANCE.md):
/// senders on any thread append encoded frames to one pending buffer; the first append
/// after a flush schedules one flush on the event loop, which writes everything pending
/// with a single write and flush. A lone message goes out at once; under load, many
/// frames share a syscall.
///
/// The slot outlives its links. Every frame gets a number; written batches are kept
/// until the peer acknowledges them, so when the link is lost and a new one attached,
/// the frames the peer did not receive are written again, in order, before anything
/// new. While no link is attached, frames wait in the pending buffer. Senders that ask
/// are suspended while the slot is backed up (not writable, detached, or holding more
/// than the high-water mark), so memory stays bounded.
public final class FrameOutbox: Sendable {
    /// A written batch not yet acknowledged by the peer.
    struct SentBatch {
        var firstFrame: UInt64
        var frames: Int
        var bytes: ByteBuffer

        var endFrame: UInt64 { firstFrame + UInt64(frames) }

        /// Drops the frames numbered below `received` from the front.
        mutating func dropFrames(below received: UInt64) {
            guard received > firstFrame else { return }
            for _ in 0..<Int(min(received, endFrame) - firstFrame) {
                let length = Int(bytes.getInteger(at: bytes.readerIndex, as: UInt32.self)!)
                bytes.moveReaderIndex(forwardBy: 4 + length)
            }
            frames -= Int(min(received, endFrame) - firstFrame)
            firstFrame = min(received, endFrame)
        }
    }

    struct State: ~Copyable {
        var channel: (any Channel)?
        var pending: ByteBuffer
        /// Frames in `pending`, and the messages they carry (a batch frame carries several).
        var pendingFrames = 0
        var pendingMessages = 0
        /// Number of the next frame to be queued.
        var nextFrame: UInt64 = 0
        var unacknowledged = Deque<SentBatch>()
        var unacknowledgedBytes = 0
        /// Buffers of batches the peer acknowledged, emptied, for the next pending
        /// frames: memory a sender has just written through, where a fresh allocation
        /// would fault its pages in again (the allocator gives freed memory back).
        var spares: [ByteBuffer] = []
        /// Batch frames among the pending and unacknowledged ones: their numbers and the
        /// messages each carries beyond one, so a loss can say how many messages it took.
        var batchFrames = Deque<(frame: UInt64, extraMessages: Int)>()
        var batchExtraMessages = 0
        /// What `close` left unacknowledged, in messages.
        var messagesLeftAtClose = 0
        var flushScheduled = false
        /// True while the compressor holds an open batch (`stream` mode), which is to be
        /// finished by `batchDeadline`.
        var batchOpen = false
        var batchDeadline = NIODeadline.uptimeNanoseconds(0)
        /// True while the event loop has a batch deadline timer pending.
        var batchTimerScheduled = false
        var coalescing: WriteCoalescing
        var closed = false
        var writable = true
        var waiters: [CheckedContinuation<Void, any Error>] = []
        var bytesWritten = 0
        var retransmittedFrames = 0
    }

    /// What this slot has carried so far.
    public struct Stats: Sendable, Hashable {
        /// Frames queued (message and control frames).
        public var frames: Int
        /// Bytes handed to sockets, frame headers and retransmissions included.
        public var bytes: Int
        /// Frames written again after a link was replaced.
        public var retransmitted: Int
        /// True while a link is attached.
        public var attached: Bool
        /// Frames queued or written that the peer has not acknowledged yet.
        public var unacknowledged: Int
        /// The messages that closing the slot now could lose: those in unacknowledged
        /// frames (a batch frame carries several), in a batch still open, and in frames
        /// handed to the compressor's holder.
        public var unacknowledgedMessages: Int
    }

    public var stats: Stats {
        // The compressor's lock comes before the state's; the two counts are read apart.
        // Frames handed over while this held the compressor are compressed after.
        defer { settle() }
        let unframed = (compressor.withLock { $0?.batch?.messages } ?? 0) + handoff.withLock { $0.frames.count }
        return state.withLock {
            Stats(
                frames: Int($0.nextFrame), bytes: $0.bytesWritten, retransmitted: $0.retransmittedFrames, attached: $0.channel != nil,
                unacknowledged: $0.unacknowledged.reduce($0.pendingFrames) { $0 + $1.frames },
                unacknowledgedMessages: $0.closed ? $0.messagesLeftAtClose : Self.framedMessages($0) + unframed)
        }
    }

    /// `stats.bytes` alone, without the compressor's lock (the event loop reads it and
    /// never waits for zlib).
    public var bytesWritten: Int { state.withLock { $0.bytesWritten } }

    /// Messages in the frames pending or written and not acknowledged.
    static func framedMessages(_ state: borrowing State) -> Int {
        state.unacknowledged.reduce(state.pendingFrames) { $0 + $1.frames } + state.batchExtraMessages
    }

    let peer: String
    let allocator: ByteBufferAllocator
    let state: Mutex<State>
    /// This slot's compressor; nil when compression is off. Payloads are deflated under
    /// its own lock (taken before `state` and `handoff`), and encoded under it unless
    /// handed over; frames join `pending` in the order the deflate stream saw them. In `stream` mode, messages that the coalescing
    /// window would hold wait in an open batch (deflated without a flush) until its
    /// deadline; the first message after it, or the event loop's timer when no sender
    /// holds this lock, finishes the batch into one frame, written at once.
    let compressor: Mutex<Compressor?>
    /// Encoded frames that senders handed over because the compressor was held, in the
    /// order they came. Whoever holds the compressor deflates them before its own frame,
    /// and looks again after letting it go: pairs sharing a slot share its deflater, but
    /// a sender waits for the lock only when the handoff is full (a wait takes one of the
    /// cooperative pool's threads from every other sender; BENCHMARKS.md).
    let handoff: Mutex<Handoff>
    let compresses: Bool
    /// True when compressed messages share batch frames (`stream` mode).
    let batches: Bool
    /// Set by the event loop's batch timer when it found the open batch overdue and the
    /// compressor held: the holder finishes the batch after letting the lock go.
    let finishRequested = Atomic<Bool>(false)
    /// Most bytes of frames one batch holds: the peer inflates a batch within its
    /// frame limit.
    let batchLimit: Int

    struct Handoff: ~Copyable {
        var frames = Deque<(frame: ByteBuffer, kind: UInt8, streamKey: UInt32)>()
        var bytes = 0
    }
    /// Most bytes of frames waiting in the handoff; a sender that finds it full waits for
    /// the compressor instead.
    var handoffLimit: Int { batchLimit }

    struct Compressor {
        let deflater: Deflater
        /// The payload being encoded, reused.
        var payload: ByteBuffer
        /// The open batch: its message count, and the kind and stream key of its first
        /// frame (the batch frame's own).
        var batch: (messages: Int, kind: UInt8, streamKey: UInt32)?
    }
    /// Pending plus unacknowledged bytes above which the slot counts as backed up.
    let highWaterMark: Int
    /// What the slot's connection delivered, for write coalescing.
    let activity: ConnectionActivity

    /// With `compression`, message frames whose payload exceeds its threshold are
    /// compressed by one deflater kept for this slot; in `stream` mode a batch holds at
    /// most `batchLimit` bytes of frames. `activity` is shared by the slots of one
    /// connection.
    public init(
        channel: (any Channel)?, peer: String, compression: CompressionSettings? = nil, batchLimit: Int = 64 << 10, highWaterMark: Int = 4 << 20,
        coalescing: TimeAmount = .zero, activity: ConnectionActivity = ConnectionActivity()
    ) {
        self.peer = peer
        self.activity = activity
        self.allocator = channel?.allocator ?? ByteBufferAllocator()
        self.highWaterMark = highWaterMark
        self.state = Mutex(State(channel: channel, pending: allocator.buffer(capacity: Self.pendingCapacity), coalescing: WriteCoalescing(window: coalescing)))
        let payload = allocator.buffer(capacity: 4096)
        self.compressor = Mutex(compression.map { Compressor(deflater: Deflater(settings: $0), payload: payload) })
        self.handoff = Mutex(Handoff())
        self.compresses = compression != nil
        self.batches = compression?.mode == .stream
        self.batchLimit = batchLimit
    }

    /// Payload bytes this slot compressed and the bytes they became; nil when it does not
    /// compress.
    public var compression: (input: Int, output: Int)? {
        defer { settle() }
        return compressor.withLock { $0.map { ($0.deflater.bytesIn, $0.deflater.bytesOut) } }
    }

    /// Appends one frame whose payload `body` writes, compressing the payload when it is
    /// `compressible` and larger than the threshold. On a thrown error nothing is
    /// appended. With compression on, a frame may be handed to the sender holding the
    /// compressor, which appends it before its own (if the slot closes first, it is
    /// dropped and counted in `stats.unacknowledgedMessages`, like anything pending).
    /// Returns true when the slot is backed up.
    @discardableResult
    public func enqueueFrame<E: Error>(
        kind: UInt8, streamKey: UInt32, compressible: Bool, body: (inout ByteBuffer) throws(E) -> Void
    ) throws(any Error) -> Bool {
        guard compresses else {
            return try append(kind: kind, streamKey: streamKey, flags: 0, body: body)
        }
        defer {
            if batches && finishRequested.load(ordering: .sequentiallyConsistent) {
                defer { settle() }
                _ = try? compressor.withLock { (compressor) throws(any Error) in
                    try deflateHandedFrames(&compressor!)
                    if finishRequested.load(ordering: .sequentiallyConsistent) { try finishBatch(&compressor!) }
                }
            }
        }
        guard compressible else {
            // After the frames handed over and the open batch, to keep the slot's order.
            defer { settle() }
            return try compressor.withLock { (compressor) throws(any Error) -> Bool in
                try deflateHandedFrames(&compressor!)
                try finishBatch(&compressor!)
                return try append(kind: kind, streamKey: streamKey, flags: 0, body: body)
            }
        }
        let held = try compressor.withLockIfAvailable { (compressor) throws(any Error) -> Bool in
            try deflateHandedFrames(&compressor!)
            try Self.encodeFrame(into: &compressor!.payload, kind: kind, streamKey: streamKey, body: body)
            return try compressEncoded(&compressor!, kind: kind, streamKey: streamKey)
        }
        if let held {
            settle()
            return held
        }
        // The compressor is busy: hand the frame to its holder, or wait if enough wait.
        var frame = allocator.buffer(capacity: 4096)
        try Self.encodeFrame(into: &frame, kind: kind, streamKey: streamKey, body: body)
        let handed = handoff.withLock { (handoff) -> ByteBuffer? in
            guard handoff.bytes + frame.readableBytes <= handoffLimit else { return frame }
            handoff.bytes += frame.readableBytes
            handoff.frames.append((frame, kind, streamKey))
            return nil
        }
        guard let frame = handed else {
            settle()
            return try state.withLock { (state) throws(any Error) -> Bool in
                guard !state.closed else { throw OutboxClosed(peer: peer) }
                return Self.isBackedUp(state, highWaterMark)
            }
        }
        defer { settle() }
        return try compressor.withLock { (compressor) throws(any Error) -> Bool in
            try deflateHandedFrames(&compressor!)
            compressor!.payload = frame
            return try compressEncoded(&compressor!, kind: kind, streamKey: streamKey)
        }
    }

    /// Writes a whole message frame (length prefix, kind, no flags, stream key, then what
    /// `body` writes) into `buffer`, replacing what it held.
    private static func encodeFrame<E: Error>(
        into buffer: inout ByteBuffer, kind: UInt8, streamKey: UInt32, body: (inout ByteBuffer) throws(E) -> Void
    ) throws(E) {
        buffer.clear()
        try Frame.write(kind: kind, streamKey: streamKey, into: &buffer, body: body)
    }

    /// Compresses the encoded frame in `compressor.payload` (encoded as a whole frame, so
    /// that a batch can carry it as it is) and appends it. Returns true when the slot is
    /// backed up.
    private func compressEncoded(_ compressor: inout Compressor, kind: UInt8, streamKey: UInt32) throws(any Error) -> Bool {
        let frameSize = compressor.payload.readableBytes
        let deflater = compressor.deflater
        if batches && frameSize - Frame.prefixSize > deflater.settings.threshold && frameSize <= batchLimit {
            if deflater.batchInput + frameSize > batchLimit { try finishBatch(&compressor) }
            if let backedUp = try addToBatch(&compressor, kind: kind, streamKey: streamKey) { return backedUp }
        }
        try finishBatch(&compressor)
        return try compressor.payload.withUnsafeReadableBytes { (frame) throws(any Error) -> Bool in
            let payload = UnsafeRawBufferPointer(rebasing: frame.dropFirst(Frame.prefixSize))
            guard payload.count > deflater.settings.threshold else {
                return try append(kind: kind, streamKey: streamKey, flags: 0) { $0.writeBytes(payload) }
            }
            return try deflater.compress(payload) { (compressed, flags) throws(any Error) -> Bool in
                try append(kind: kind, streamKey: streamKey, flags: flags) { $0.writeBytes(compressed) }
            }
        }
    }

    /// Compresses the frames handed over, in their order. If the slot is closed, they
    /// are dropped with it.
    private func deflateHandedFrames(_ compressor: inout Compressor) throws(any Error) {
        while true {
            let frames = handoff.withLock { (handoff) -> Deque<(frame: ByteBuffer, kind: UInt8, streamKey: UInt32)> in
                defer { handoff = Handoff() }
                return handoff.frames
            }
            guard !frames.isEmpty else { return }
            for (frame, kind, streamKey) in frames {
                compressor.payload = frame
                _ = try compressEncoded(&compressor, kind: kind, streamKey: streamKey)
            }
        }
    }

    /// After letting the compressor go: frames handed over while it was held are
    /// compressed now, unless another sender holds it (it looks after letting go). A
    /// sender kept at this while others keep handing frames over leaves the rest to a
    /// task of its own after a few rounds.
    private func settle(rounds: Int = 4) {
        for _ in 0..<rounds {
            guard handoff.withLock({ !$0.frames.isEmpty }) else { return }
            let held = compressor.withLockIfAvailable { (compressor) -> Bool in
                do {
                    try deflateHandedFrames(&compressor!)
                } catch {
                    handoff.withLock { $0 = Handoff() }
                }
                return true
            }
            guard held != nil else { return }
        }
        if handoff.withLock({ !$0.frames.isEmpty }) { Task { self.settle() } }
    }

    /// Deflates the encoded frame in `compressor.payload` into the open batch, or opens one
    /// held until the coalescing window's end. A message that nothing would hold returns
    /// nil, to go as a frame of its own; a message that comes after the open batch's
    /// deadline joins it and finishes it, so the event loop never waits for zlib.
    private func addToBatch(_ compressor: inout Compressor, kind: UInt8, streamKey: UInt32) throws(any Error) -> Bool? {
        let (finishNow, timer, backedUp) = try state.withLock { (state) throws(any Error) -> (Bool, (any Channel, NIODeadline)?, Bool) in
            guard !state.closed else { throw OutboxClosed(peer: peer) }
            let backedUp = Self.isBackedUp(state, highWaterMark)
            guard let channel = state.channel else {
                // Finished when a link is attached.
                state.batchOpen = true
                state.batchDeadline = .uptimeNanoseconds(0)
                return (false, nil, backedUp)
            }
            let now = channel.eventLoop.now
            if state.batchOpen { return (now >= state.batchDeadline, nil, backedUp) }
            guard let due = state.coalescing.due(now: now, deliveries: activity.deliveries) else { return (true, nil, backedUp) }
            state.batchOpen = true
            state.batchDeadline = due
            guard !state.batchTimerScheduled else { return (false, nil, backedUp) }
            state.batchTimerScheduled = true
            return (false, (channel, due), backedUp)
        }
        if finishNow && compressor.batch == nil { return nil }
        compressor.payload.withUnsafeReadableBytes { compressor.deflater.addToBatch($0) }
        compressor.batch = ((compressor.batch?.messages ?? 0) + 1, compressor.batch?.kind ?? kind, compressor.batch?.streamKey ?? streamKey)
        if finishNow { return try finishBatch(&compressor) }
        if let (channel, due) = timer { channel.eventLoop.scheduleTask(deadline: due) { self.batchDeadlinePassed() } }
        return backedUp
    }

    /// The event loop's batch timer: finishes the open batch once its deadline has passed,
    /// and follows the next batch's deadline. When a sender holds the compressor, it is
    /// queueing a message and finishes an overdue batch itself: as it joins the batch, or
    /// when it sees `finishRequested` after letting the lock go. The event loop never
    /// waits for zlib.
    func batchDeadlinePassed() {
        enum Next { case done, at(NIODeadline), handOff }
        /// What the timer does next, read under the state lock.
        func next(_ state: inout State) -> Next {
            guard state.batchOpen, let channel = state.channel else {
                state.batchTimerScheduled = false
                return .done
            }
            if state.batchDeadline > channel.eventLoop.now { return .at(state.batchDeadline) }
            state.batchTimerScheduled = false
            return .handOff
        }
        func finishIfDue() -> Next? {
            compressor.withLockIfAvailable { compressor -> Next in
                let step = state.withLock { next(&$0) }
                if case .handOff = step { _ = try? finishBatch(&compressor!) }
                return step
            }
        }
        var step = finishIfDue()
        if step == nil {
            step = state.withLock { next(&$0) }
            if case .handOff = step {
                // The lock's holder sees this after letting the lock go; if it already has,
                // the lock is free now.
                finishRequested.store(true, ordering: .sequentiallyConsistent)
                _ = compressor.withLockIfAvailable { compressor in
                    if finishRequested.load(ordering: .sequentiallyConsistent) { _ = try? finishBatch(&compressor!) }
                }
            }
        }
        if case .at(let due) = step, let channel = state.withLock({ $0.channel }) {
            channel.eventLoop.scheduleTask(deadline: due) { self.batchDeadlinePassed() }
        }
        // Frames handed over while this held the compressor: compressed off the event loop.
        if handoff.withLock({ !$0.frames.isEmpty }) { Task { self.settle() } }
    }

    /// Appends the open batch, if any, as one frame. Returns true when the slot is
    /// backed up.
    @discardableResult
    private func finishBatch(_ compressor: inout Compressor) throws(any Error) -> Bool {
        finishRequested.store(false, ordering: .sequentiallyConsistent)
        guard let batch = compressor.batch else { return false }
        compressor.batch = nil
        return try compressor.deflater.finishBatch { (compressed, flags) throws(any Error) -> Bool in
            try append(kind: batch.kind, streamKey: batch.streamKey, flags: flags, messages: batch.messages, finishesBatch: true) { $0.writeBytes(compressed) }
        }
    }

    /// Appends one frame whose payload `body` writes in place into `pending`, and
    /// schedules a flush unless one is scheduled.
    private func append<E: Error>(
        kind: UInt8, streamKey: UInt32, flags: UInt8, messages: Int = 1, finishesBatch: Bool = false, body: (inout ByteBuffer) throws(E) -> Void
    ) throws(any Error) -> Bool {
        let (channel, due, backedUp) = try state.withLock { (state) throws(any Error) -> ((any Channel)?, NIODeadline?, Bool) in
            guard !state.closed else { throw OutboxClosed(peer: peer) }
            try Frame.write(kind: kind, flags: flags, streamKey: streamKey, into: &state.pending, body: body)
            state.pendingFrames += 1
            state.pendingMessages += messages
            if messages > 1 {
                state.batchFrames.append((state.nextFrame, messages - 1))
                state.batchExtraMessages += messages - 1
            }
            state.nextFrame += 1
            if finishesBatch {
                // The batch waited out the window: it is written at once, and the next
                // batch is held a window from now.
                state.batchOpen = false
                if let channel = state.channel { state.coalescing.flushed(at: channel.eventLoop.now, messages: messages, deliveries: activity.deliveries) }
            }
            let backedUp = Self.isBackedUp(state, highWaterMark)
            guard !state.flushScheduled, let channel = state.channel else { return (nil, nil, backedUp) }
            state.flushScheduled = true
            return (channel, finishesBatch ? nil : state.coalescing.due(now: channel.eventLoop.now, deliveries: activity.deliveries), backedUp)
        }
        if let channel { channel.eventLoop.scheduleFlush(at: due) { self.flush() } }
        return backedUp
    }

    static func isBackedUp(_ state: borrowing State, _ highWaterMark: Int) -> Bool {
        state.channel == nil || !state.writable || state.pending.readableBytes + state.unacknowledgedBytes > highWaterMark
    }

    /// Suspends while the slot is backed up, so a fast producer cannot grow memory
    /// without bound. Returns at once in the common case.
    public func waitUntilWritable() async throws {
        let mustWait = try state.withLock { (state) throws(OutboxClosed) -> Bool in
            guard !state.closed else { throw OutboxClosed(peer: peer) }
            return Self.isBackedUp(state, highWaterMark)
        }
        guard mustWait else { return }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let resumeNow = state.withLock { state -> Result<Void, any Error>? in
                if state.closed { return .failure(OutboxClosed(peer: peer)) }
                if !Self.isBackedUp(state, highWaterMark) { return .success(()) }
                state.waiters.append(continuation)
                return nil
            }
            if let resumeNow { continuation.resume(with: resumeNow) }
        }
    }

    /// Writes everything pending with one write and one flush, keeping it until the peer
    /// acknowledges it. Runs on the attached link's event loop.
    func flush() {
        let (channel, batch) = state.withLock { state -> ((any Channel)?, ByteBuffer?) in
            state.flushScheduled = false
            guard !state.closed, let channel = state.channel, state.pending.readableBytes > 0 else { return (nil, nil) }
            state.coalescing.flushed(at: channel.eventLoop.now, messages: state.pendingMessages, deliveries: activity.deliveries)
            let batch = state.pending
            state.unacknowledged.append(SentBatch(firstFrame: state.nextFrame - UInt64(state.pendingFrames), frames: state.pendingFrames, bytes: batch))
            state.unacknowledgedBytes += batch.readableBytes
            state.pending = state.spares.popLast() ?? allocator.buffer(capacity: max(Self.pendingCapacity, batch.readableBytes))
            state.pendingFrames = 0
            state.pendingMessages = 0
            state.bytesWritten += batch.readableBytes
            return (channel, batch)
        }
        if let channel, let batch {
            channel.writeAndFlush(batch, promise: nil)
            BusyPoll.touch(channel.eventLoop)
        }
    }

    /// Capacity of a new pending buffer: a batch's worth of frames.
    static let pendingCapacity = 64 << 10
    /// Memory kept in spare buffers at most: the batches one acknowledgement covers
    /// under load (a quarter of the high-water mark by default).
    static let maxSpareBytes = 1 << 20

    /// Keeps an acknowledged batch's buffer for the next pending frames, while the
    /// spares hold at most `maxSpareBytes`. `bytes` must be the buffer's only
    /// reference, or emptying it allocates anew.
    static func recycle(_ bytes: inout ByteBuffer, _ state: inout State) {
        guard state.spares.reduce(bytes.capacity, { $0 + $1.capacity }) <= maxSpareBytes else { return }
        bytes.clear()
        state.spares.append(bytes)
    }

    /// The peer has received every frame numbered below `received`: forget them, down
    /// to single frames, so what is kept is only what the peer may lack.
    public func acknowledge(received: UInt64) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            // Frame numbers only: a copy of the batch would share its buffer, which then
            // could not be emptied in place for reuse.
            while let first = state.unacknowledged.first.map({ (start: $0.firstFrame, end: $0.endFrame) }), first.start < received {
                // A batch acknowledged whole goes at once; walking its frames one by one
                // (256 and more per acknowledgement) held the lock the senders wait on.
                var batch = state.unacknowledged.removeFirst()
                if received >= first.end {
                    state.unacknowledgedBytes -= batch.bytes.readableBytes
                    Self.recycle(&batch.bytes, &state)
                    continue
                }
                let bytes = batch.bytes.readableBytes
                batch.dropFrames(below: received)
                state.unacknowledgedBytes -= bytes - batch.bytes.readableBytes
                state.unacknowledged.prepend(batch)
                break
            }
            Self.forgetBatchFrames(below: received, &state)
            // A slot with nothing in flight is quiet: its spares would only hold memory.
            if state.unacknowledged.isEmpty && state.pending.readableBytes == 0 { state.spares.removeAll() }
            return Self.takeWaitersIfFree(&state, highWaterMark)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// The peer has the frames numbered below `received`: their messages are no longer
    /// counted.
    static func forgetBatchFrames(below received: UInt64, _ state: inout State) {
        while let batch = state.batchFrames.first, batch.frame < received {
            state.batchExtraMessages -= batch.extraMessages
            state.batchFrames.removeFirst()
        }
    }

    static func takeWaitersIfFree(_ state: inout State, _ highWaterMark: Int) -> [CheckedContinuation<Void, any Error>] {
        guard !isBackedUp(state, highWaterMark) else { return [] }
        defer { state.waiters = [] }
        return state.waiters
    }

    /// The link went away: frames wait until another is attached.
    public func detach() {
        state.withLock { $0.channel = nil }
    }

    /// Attaches a new link. The peer has received every frame numbered below
    /// `peerReceived`; the ones after it that were written before are written again,
    /// then everything pending. Runs on `channel`'s event loop.
    public func attach(_ channel: any Channel, peerReceived: UInt64) {
        let (batches, waiters) = state.withLock { state -> ([ByteBuffer], [CheckedContinuation<Void, any Error>]) in
            state.channel = channel
            state.writable = channel.isWritable
            var resend: [ByteBuffer] = []
            var kept = Deque<SentBatch>()
            for var batch in state.unacknowledged {
                if batch.endFrame <= peerReceived { continue }
                batch.dropFrames(below: peerReceived)
                state.retransmittedFrames += batch.frames
                state.bytesWritten += batch.bytes.readableBytes
                resend.append(batch.bytes)
                kept.append(batch)
            }
            state.unacknowledged = kept
            state.unacknowledgedBytes = kept.reduce(0) { $0 + $1.bytes.readableBytes }
            Self.forgetBatchFrames(below: peerReceived, &state)
            return (resend, Self.takeWaitersIfFree(&state, highWaterMark))
        }
        for batch in batches { channel.write(batch, promise: nil) }
        channel.flush()
        flush()
        if self.batches { batchDeadlinePassed() }
        for waiter in waiters { waiter.resume() }
    }

    /// Tracks the link's writability; call from `channelWritabilityChanged`.
    public func writabilityChanged(_ writable: Bool) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            state.writable = writable
            return Self.takeWaitersIfFree(&state, highWaterMark)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Refuses further frames and fails waiting senders. Pending frames are dropped
    /// unless `flushPending`, in which case they are written first; the result then
    /// completes once they are written (nil when there was nothing to write). From then
    /// on, `stats.unacknowledgedMessages` is what the slot held that the peer had not
    /// acknowledged when it closed.
    @discardableResult
    public func close(flushPending: Bool) -> EventLoopFuture<Void>? {
        // Under the compressor's lock, so that no batch or handed frame moves while the
        // slot closes and counts what it leaves.
        let (waiters, channel, batch) = compressor.withLock { compressor in
            if flushPending && compressor != nil {
                _ = try? deflateHandedFrames(&compressor!)
                _ = try? finishBatch(&compressor!)
            }
            let handed = handoff.withLock { handoff in
                defer { handoff = Handoff() }
                return handoff.frames.count
            }
            let unframed = (compressor?.batch?.messages ?? 0) + handed
            return state.withLock { state -> ([CheckedContinuation<Void, any Error>], (any Channel)?, ByteBuffer?) in
                let batch = flushPending && !state.closed && state.pending.readableBytes > 0 ? state.pending : nil
                if !state.closed { state.messagesLeftAtClose = Self.framedMessages(state) + unframed }
                state.bytesWritten += batch?.readableBytes ?? 0
                state.closed = true
                state.pending.clear()
                state.unacknowledged.removeAll()
                state.spares.removeAll()
                defer { state.waiters = [] }
                return (state.waiters, state.channel, batch)
            }
        }
        for waiter in waiters { waiter.resume(throwing: OutboxClosed(peer: peer)) }
        guard let channel, let batch else { return nil }
        return channel.writeAndFlush(batch)
    }
}
