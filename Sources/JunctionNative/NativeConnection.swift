import JunctionCore
import JunctionTerm
import JunctionTransport
import NIOCore
import Synchronization

/// A message too large for the connection it was sent on.
public struct MessageTooLarge: Error, Sendable, CustomStringConvertible {
    public let size: Int
    public let limit: Int
    public let peer: NodeName
    public var description: String {
        "a message of \(size) bytes exceeds the maximum of \(limit) bytes agreed with \(peer); raise maxMessageSize on both nodes or send less"
    }
}

/// A message to a process whose registered name does not fit a native frame.
public struct NameTooLong: Error, Sendable, CustomStringConvertible {
    public let name: String
    public var description: String {
        "the process name \"\(name.prefix(40))...\" takes \(name.utf8.count) bytes of UTF-8; a native frame carries names of up to 255: register the process under a shorter name"
    }
}

/// One established native connection to a remote node: a pool of links, one per slot.
/// Frames of one (sender, receiver) pair always use the slot their stream key picks,
/// so their order holds while links come and go. Sends are thread-safe and batched.
public final class NativeConnection: Sendable, CustomStringConvertible {
    public enum Direction: String, Sendable { case incoming, outgoing }

    public let peer: NodeName
    public let stack: String
    public let direction: Direction
    public let negotiated: HandshakeResult
    /// The peer's address as seen on the first link.
    public let remoteAddress: String
    /// How this side compresses what it sends; nil when either side turned compression off.
    public let compression: CompressionSettings?
    let slots: [LinkSlot]
    /// Messages delivered from the peer on any link, for the slots' write coalescing.
    let activity: ConnectionActivity
    /// Where the dialler reconnects lost links (nil on the accepting side).
    let route: ResolvedRoute?
    /// The certificate the dialler's links present instead of the stack's (a route's).
    let presenting: CertificateFiles?
    let lifecycle = Mutex(Lifecycle())
    /// Space for kind, flags, stream key, addressing: the frame limit is the message limit plus this.
    static let frameOverhead = 512
    /// Most bytes of frames a `stream`-mode batch frame holds (within the frame limit).
    static let batchLimit = 64 << 10
    /// Acknowledge after this many frames or bytes received on a slot.
    static let ackEveryFrames: UInt64 = 256
    static let ackEveryBytes = 1 << 20

    struct Lifecycle: Sendable {
        /// Set once this side or the peer asked for a graceful close.
        var closing = false
        /// Set once the connection ended (the delegate heard of it).
        var ended = false
        var rejoins = 0
    }

    init(
        peer: NodeName, stack: String, direction: Direction, negotiated: HandshakeResult, compression: CompressionSettings?, channel: any Channel,
        route: ResolvedRoute?, presenting: CertificateFiles? = nil, writeCoalescing: TimeAmount
    ) {
        self.presenting = presenting
        self.peer = peer
        self.stack = stack
        self.direction = direction
        self.negotiated = negotiated
        self.remoteAddress = channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "unknown"
        let compression = negotiated.flags.contains(.compression) ? compression : nil
        self.compression = compression
        self.route = route
        let limit = negotiated.maxMessageSize + Self.frameOverhead
        let activity = ConnectionActivity()
        self.activity = activity
        self.slots = (0..<negotiated.poolSize).map { index in
            LinkSlot(index: index, channel: index == 0 ? channel : nil, peer: peer.description, compression: compression, inflateLimit: limit,
                batchLimit: min(Self.batchLimit, limit), writeCoalescing: writeCoalescing, activity: activity)
        }
    }

    public var description: String { "\(direction) \(stack) connection to \(peer) at \(remoteAddress)" }

    /// The sockets of the links attached now.
    public var channels: [any Channel] { slots.compactMap(\.channel) }

    func slot(for streamKey: UInt32) -> LinkSlot { slots[Int(streamKey % UInt32(slots.count))] }

    /// Queues a message for the process registered as `name` on the peer. Returns true
    /// when its slot is backed up (see `waitUntilWritable`).
    @discardableResult
    public func send(toName name: String, streamKey: UInt32, payload: Payload) throws -> Bool {
        guard name.utf8.count <= 255 else { throw NameTooLong(name: name) }
        return try sendMessage(kind: NativeFrameKind.sendName, streamKey: streamKey, payload: payload) { buffer in
            var name = name
            _ = name.withUTF8 { utf8 in
                buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 1 + utf8.count) { raw in
                    raw.storeBytes(of: UInt8(utf8.count), as: UInt8.self)
                    UnsafeMutableRawBufferPointer(rebasing: raw[1...]).copyMemory(from: UnsafeRawBufferPointer(utf8))
                    return 1 + utf8.count
                }
            }
        }
    }

    /// Queues a message for a process of the peer, by pid. Returns true when its slot is
    /// backed up (see `waitUntilWritable`).
    @discardableResult
    public func send(toPid pid: Pid, streamKey: UInt32, payload: Payload) throws -> Bool {
        try sendMessage(kind: NativeFrameKind.sendPid, streamKey: streamKey, payload: payload) { buffer in
            // Raw stores, as for names: ByteBuffer's integer writes cost more than the stores.
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 8) { raw in
                raw.storeBytes(of: pid.id.bigEndian, as: UInt32.self)
                raw.storeBytes(of: pid.serial.bigEndian, toByteOffset: 4, as: UInt32.self)
                return 8
            }
        }
    }

    /// Queues a monitor, demonitor or down frame (`NativeFrameKind`) carrying `term`, on
    /// the slot of `streamKey` so it keeps its place among that pair's messages.
    public func sendControl(kind: UInt8, streamKey: UInt32, term: Term) throws {
        _ = try slot(for: streamKey).outbox.enqueueFrame(kind: kind, streamKey: streamKey, compressible: false) { (buffer) throws(any Error) in
            try ETF.encode(term, into: &buffer)
        }
    }

    /// One message frame: the addressing `address` writes, then the payload, whose
    /// size is checked against the agreed limit.
    func sendMessage(kind: UInt8, streamKey: UInt32, payload: Payload, address: (inout ByteBuffer) -> Void) throws -> Bool {
        let limit = negotiated.maxMessageSize
        let peer = self.peer
        return try slot(for: streamKey).outbox.enqueueFrame(kind: kind, streamKey: streamKey, compressible: true) { (buffer) throws(any Error) in
            address(&buffer)
            let start = buffer.writerIndex
            try payload.write(into: &buffer)
            let size = buffer.writerIndex - start
            if size > limit { throw MessageTooLarge(size: size, limit: limit, peer: peer) }
        }
    }

    /// Suspends while the slot of `streamKey` is backed up.
    public func waitUntilWritable(streamKey: UInt32) async throws {
        try await slot(for: streamKey).outbox.waitUntilWritable()
    }

    /// Bytes this side has written on all links, retransmissions included.
    public var bytesSent: Int { slots.reduce(0) { $0 + $1.outbox.bytesWritten } }

    /// What the connection looks like now: its pool and each link's traffic.
    public var info: ConnectionInfo {
        var lastRead = NIODeadline.distantPast
        var compressed = (input: 0, output: 0)
        let links = slots.map { slot in
            let sent = slot.outbox.stats
            let received = slot.receiver.withLock { ($0.frames, $0.bytes, $0.lastRead) }
            lastRead = max(lastRead, received.2)
            if let compression = slot.outbox.compression {
                compressed.input += compression.input
                compressed.output += compression.output
            }
            return ConnectionInfo.Link(
                slot: slot.index, live: sent.attached, framesSent: sent.frames, bytesSent: sent.bytes, framesReceived: Int(received.0),
                bytesReceived: received.1, retransmittedFrames: sent.retransmitted, unacknowledgedFrames: sent.unacknowledged)
        }
        return ConnectionInfo(
            peer: peer, stack: stack, direction: direction, poolSize: slots.count, liveLinks: links.filter(\.live).count,
            rejoins: lifecycle.withLock { $0.rejoins }, links: links, compressedInput: compressed.input, compressedOutput: compressed.output,
            secondsSinceLastRead: Double((NIODeadline.now() - lastRead).nanoseconds) / 1e9)
    }

    /// Closes gracefully: every slot sends what it holds and a close frame; each link
    /// closes when the peer's close frame comes back on it, so what either side sent
    /// before its close frame is delivered. Links the peer does not close within
    /// `deadline` are closed anyway.
    public func close(deadline: TimeAmount = .seconds(5)) {
        let first = lifecycle.withLock { state -> Bool in
            defer { state.closing = true }
            return !state.closing
        }
        guard first else { return }
        for slot in slots { sendClose(on: slot) }
        for slot in slots {
            guard let channel = slot.channel else { continue }
            channel.eventLoop.scheduleTask(in: deadline) { channel.close(promise: nil) }
        }
    }

    /// Closes gracefully and returns when every link has closed (at the latest after
    /// `deadline`).
    public func closeAndWait(deadline: TimeAmount = .seconds(5)) async {
        close(deadline: deadline)
        for channel in slots.compactMap(\.channel) { try? await channel.closeFuture.get() }
    }

    /// Queues this side's close frame on `slot` behind what it holds; the returned
    /// future completes when they are written.
    @discardableResult
    func sendClose(on slot: LinkSlot) -> EventLoopFuture<Void>? {
        _ = try? slot.outbox.enqueueFrame(kind: NativeFrameKind.close, streamKey: 0, compressible: false) { _ in }
        return slot.outbox.close(flushPending: true)
    }

    /// The peer's close frame arrived on `slot`: answer it with ours (when this side did
    /// not start the close) and close that link once written.
    func peerClosed(_ slot: LinkSlot, channel: any Channel) {
        let startedHere = lifecycle.withLock { state -> Bool in
            defer { state.closing = true }
            return state.closing
        }
        guard !startedHere, let written = sendClose(on: slot) else {
            channel.close(promise: nil)
            return
        }
        written.whenComplete { _ in channel.close(promise: nil) }
    }

    /// Ends the connection at once: every link closed, what is queued dropped, no link
    /// rejoined.
    public func abort() {
        lifecycle.withLock { $0.closing = true }
        for slot in slots {
            slot.outbox.close(flushPending: false)
            slot.channel?.close(promise: nil)
        }
    }

    var isClosing: Bool { lifecycle.withLock { $0.closing } }

    /// Marks the connection ended; true only for the first caller.
    func markEnded() -> Bool {
        lifecycle.withLock { state in
            defer { state.ended = true }
            return !state.ended
        }
    }

    func countRejoin() { lifecycle.withLock { $0.rejoins += 1 } }
}

/// One slot of a connection: its outbox (which outlives links), the receive state, and
/// the link currently carrying it.
final class LinkSlot: Sendable {
    struct Receiver: ~Copyable {
        /// Frames received on this slot (all frames but acknowledgements and joins).
        var frames: UInt64 = 0
        var bytes = 0
        var framesAtLastAck: UInt64 = 0
        var bytesSinceAck = 0
        /// When the link last read anything (frames or heartbeats).
        var lastRead = NIODeadline.now()
        let inflater: Inflater?
    }

    let index: Int
    let outbox: FrameOutbox
    let receiver: Mutex<Receiver>
    let link: Mutex<(any Channel)?>
    /// Counter of the last join of this slot: a join must carry a larger one, so a
    /// recorded join cannot be replayed.
    let joinCounter = Mutex<UInt64>(0)

    init(
        index: Int, channel: (any Channel)?, peer: String, compression: CompressionSettings?, inflateLimit: Int, batchLimit: Int,
        writeCoalescing: TimeAmount, activity: ConnectionActivity
    ) {
        self.index = index
        self.outbox = FrameOutbox(
            channel: channel, peer: peer, compression: compression, batchLimit: batchLimit, coalescing: writeCoalescing, activity: activity)
        self.receiver = Mutex(Receiver(inflater: compression == nil ? nil : Inflater(limit: inflateLimit)))
        self.link = Mutex(channel)
    }

    var channel: (any Channel)? { link.withLock { $0 } }

    /// Frames received so far.
    var received: UInt64 { receiver.withLock { $0.frames } }

    /// (Acceptor) Accepts `counter` if it is larger than any before.
    func acceptJoin(counter: UInt64) -> Bool {
        joinCounter.withLock { last in
            guard counter > last else { return false }
            last = counter
            return true
        }
    }

    /// (Dialler) The counter for this slot's next join.
    func nextJoinCounter() -> UInt64 {
        joinCounter.withLock { last in
            last += 1
            return last
        }
    }
}

/// A connection as `junction status` and tests see it.
public struct ConnectionInfo: Sendable, Hashable {
    public struct Link: Sendable, Hashable {
        public var slot: Int
        public var live: Bool
        /// Frames queued on the slot, each counted once (a `stream`-mode batch is one frame).
        public var framesSent: Int
        public var bytesSent: Int
        public var framesReceived: Int
        public var bytesReceived: Int
        public var retransmittedFrames: Int
        /// Frames queued or sent that the peer has not acknowledged yet (the slot's queue).
        public var unacknowledgedFrames: Int
    }

    public var peer: NodeName
    public var stack: String
    public var direction: NativeConnection.Direction
    public var poolSize: Int
    public var liveLinks: Int
    /// Links lost and joined again.
    public var rejoins: Int
    public var links: [Link]
    /// Payload bytes compressed by this side and the bytes they became (0 and 0 when it
    /// does not compress).
    public var compressedInput: Int
    public var compressedOutput: Int
    /// Since any link of the connection last read something (frames or heartbeats).
    public var secondsSinceLastRead: Double
}
