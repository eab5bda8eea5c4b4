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

/// One established native connection to a remote node (one link in this version).
/// Sends are thread-safe and batched by the link's outbox.
public final class NativeConnection: Sendable, CustomStringConvertible {
    public enum Direction: String, Sendable { case incoming, outgoing }

    public let peer: NodeName
    public let stack: String
    public let direction: Direction
    public let negotiated: HandshakeResult
    /// The peer's address as seen on the socket.
    public let remoteAddress: String
    let channel: any Channel
    let outbox: FrameOutbox
    /// How this side compresses what it sends; nil when either side turned compression off.
    public let compression: CompressionSettings?
    /// Set when this side asked for the close, so the link's end is not a loss.
    let closeRequested = Atomic<Bool>(false)
    /// Space for kind, flags, stream key, addressing: the frame limit is the message limit plus this.
    static let frameOverhead = 512

    /// `compression` is this side's setting, used when both sides offered compression.
    init(peer: NodeName, stack: String, direction: Direction, negotiated: HandshakeResult, compression: CompressionSettings?, channel: any Channel) {
        self.peer = peer
        self.stack = stack
        self.direction = direction
        self.negotiated = negotiated
        self.remoteAddress = channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "unknown"
        self.channel = channel
        self.compression = negotiated.flags.contains(.compression) ? compression : nil
        self.outbox = FrameOutbox(channel: channel, peer: peer.description, compression: self.compression)
    }

    public var description: String { "\(direction) \(stack) connection to \(peer) at \(remoteAddress)" }

    /// Queues a message for the process registered as `name` on the peer. Returns true
    /// when the link is backed up (see `waitUntilWritable`).
    @discardableResult
    public func send(toName name: String, streamKey: UInt32, payload: Payload) throws -> Bool {
        try sendMessage(kind: NativeFrameKind.sendName, streamKey: streamKey, payload: payload) { buffer in
            let nameBytes = name.utf8
            buffer.writeInteger(UInt8(nameBytes.count))
            buffer.writeBytes(nameBytes)
        }
    }

    /// Queues a message for a process of the peer, by pid. Returns true when the link
    /// is backed up (see `waitUntilWritable`).
    @discardableResult
    public func send(toPid pid: Pid, streamKey: UInt32, payload: Payload) throws -> Bool {
        try sendMessage(kind: NativeFrameKind.sendPid, streamKey: streamKey, payload: payload) { buffer in
            buffer.writeMultipleIntegers(pid.id, pid.serial)
        }
    }

    /// One message frame: the addressing `address` writes, then the payload, whose
    /// size is checked against the agreed limit.
    func sendMessage(kind: UInt8, streamKey: UInt32, payload: Payload, address: (inout ByteBuffer) -> Void) throws -> Bool {
        let limit = negotiated.maxMessageSize
        let peer = self.peer
        return try outbox.enqueueFrame(kind: kind, streamKey: streamKey, compressible: true) { (buffer) throws(any Error) in
            address(&buffer)
            let start = buffer.writerIndex
            try payload.write(into: &buffer)
            let size = buffer.writerIndex - start
            if size > limit { throw MessageTooLarge(size: size, limit: limit, peer: peer) }
        }
    }

    /// Frames and bytes this side has sent on the connection.
    public var sent: FrameOutbox.Stats { outbox.stats }

    /// Suspends while the link is backed up.
    public func waitUntilWritable() async throws {
        try await outbox.waitUntilWritable()
    }

    /// Closes gracefully: queued frames and a close frame go out, then the socket closes.
    public func close() {
        closeRequested.store(true, ordering: .relaxed)
        _ = try? outbox.enqueueFrame(kind: NativeFrameKind.close, streamKey: 0, compressible: false) { _ in }
        outbox.close(flushPending: true)
        let channel = self.channel
        channel.eventLoop.execute { channel.close(promise: nil) }
    }

    /// Closes at once, dropping what is queued.
    func abort() {
        outbox.close(flushPending: false)
        channel.close(promise: nil)
    }
}

extension NativeConnection: Hashable {
    public static func == (lhs: NativeConnection, rhs: NativeConnection) -> Bool { lhs === rhs }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
}
