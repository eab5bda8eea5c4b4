import JunctionCore
import JunctionTransport
import Logging
import NIOCore

/// What the node decides and learns about native connections. Every method is called
/// on the connection's event loop and must not block.
public protocol NativeStackDelegate: AnyObject, Sendable {
    /// May `peer` connect through `stack`? Decides the cookie too.
    func admit(peer: NodeName, stack: NativeStack) -> NativeHandshake.Admission
    /// A connection finished its handshake (either direction).
    func established(_ connection: NativeConnection)
    /// An established connection ended; `error` is nil for a graceful close.
    func closed(_ connection: NativeConnection, error: (any Error)?)
    /// Data frames that arrived in one read, in order.
    func received(_ frames: [Frame], on connection: NativeConnection) throws
}

/// The shell around `NativeHandshake` for one link: runs the handshake with its
/// deadlines, then cuts data frames in place and hands each read's frames to the node
/// as one batch. A protocol error closes this link only.
final class NativeLinkHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let stack: NativeStack
    var handshake: NativeHandshake
    var parser = FrameParser(maxFrameSize: NativeHandshake.maxFrameSize)
    var connection: NativeConnection?
    var timer: Scheduled<Void>?
    var batch: [Frame] = []
    /// This side's compression setting for what it sends on this link.
    let compression: CompressionSettings
    /// Inflates compressed frames; created when both sides offered compression.
    var inflater: Inflater?
    /// Completed for a dialled link once its handshake ends (then set to nil).
    var established: EventLoopPromise<NativeConnection>?
    let direction: NativeConnection.Direction
    var logger: Logger

    init(stack: NativeStack, handshake: NativeHandshake, compression: CompressionSettings, established: EventLoopPromise<NativeConnection>?, logger: Logger) {
        self.stack = stack
        self.compression = compression
        self.handshake = handshake
        self.established = established
        self.direction = established == nil ? .incoming : .outgoing
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        if let peer = context.channel.remoteAddress { logger[metadataKey: "junction.address"] = "\(peer)" }
        perform(handshake.start(now: .now()), context: context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        do {
            try parser.consume(bytes) { frame in
                if let connection {
                    try dataFrame(frame, connection: connection, context: context)
                } else {
                    perform(handshake.receive(frame, now: .now()), context: context)
                }
            }
            if let connection, !batch.isEmpty {
                let frames = batch
                batch.removeAll(keepingCapacity: true)
                try stack.delegate.received(frames, on: connection)
            }
        } catch {
            batch.removeAll()
            if connection == nil {
                perform(handshake.malformedInput("the peer's bytes are not a Junction handshake (\(error)): it does not speak Junction's protocol"), context: context)
            } else {
                protocolError(error, context: context)
            }
        }
    }

    func dataFrame(_ frame: Frame, connection: NativeConnection, context: ChannelHandlerContext) throws {
        switch frame.kind {
        case NativeFrameKind.sendName, NativeFrameKind.sendPid:
            guard frame.flags & FrameFlags.compressed != 0 else {
                batch.append(frame)
                return
            }
            guard let inflater else {
                throw NativeProtocolError("\(connection.peer) sent a compressed frame although compression was not negotiated")
            }
            var inflated = frame
            inflated.payload = try inflater.inflate(frame.payload, flags: frame.flags, allocator: context.channel.allocator)
            batch.append(inflated)
        case NativeFrameKind.close:
            closingGracefully = true
            context.close(promise: nil)
        default:
            throw NativeProtocolError("unknown frame kind \(frame.kind) from \(connection.peer)")
        }
    }

    var closingGracefully = false

    func protocolError(_ error: any Error, context: ChannelHandlerContext) {
        logger.warning("closing the link: malformed input from the peer", metadata: ["junction.error": "\(error)"])
        failure = error
        context.close(promise: nil)
    }

    var failure: (any Error)?

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        connection?.outbox.writabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        if let connection {
            connection.outbox.close(flushPending: false)
            let graceful = closingGracefully || connection.closeRequested.load(ordering: .relaxed)
            let error: (any Error)? = graceful ? nil : (failure ?? NativeProtocolError("the link to \(connection.peer) was lost"))
            stack.delegate.closed(connection, error: error)
        } else {
            complete(.failure(NativeProtocolError("the peer closed the link during the handshake")))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("link error", metadata: ["junction.error": "\(error)"])
        if failure == nil { failure = error }
        context.close(promise: nil)
    }

    // MARK: - handshake actions

    func perform(_ action: NativeHandshake.Action?, context: ChannelHandlerContext) {
        switch action {
        case nil:
            break
        case .send(let bytes):
            context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
        case .admit(let peer):
            logger[metadataKey: "junction.peer"] = "\(peer)"
            perform(handshake.admit(stack.delegate.admit(peer: peer, stack: stack), now: .now()), context: context)
        case .completed(let result, let send):
            if let send { context.writeAndFlush(wrapOutboundOut(send), promise: nil) }
            let connection = NativeConnection(
                peer: result.peer, stack: stack.name, direction: direction, negotiated: result, compression: compression, channel: context.channel)
            if result.flags.contains(.compression) { inflater = Inflater(limit: result.maxMessageSize + NativeConnection.frameOverhead) }
            self.connection = connection
            parser.maxFrameSize = result.maxMessageSize + NativeConnection.frameOverhead
            logger[metadataKey: "junction.peer"] = "\(result.peer)"
            logger.debug("handshake complete", metadata: ["junction.direction": "\(direction.rawValue)"])
            stack.delegate.established(connection)
            complete(.success(connection))
        case .failed(let error, let farewell):
            let level: Logger.Level = error.reason == .simultaneous ? .debug : .warning
            logger.log(level: level, "handshake failed: \(error)", metadata: ["junction.reason": "\(error.reason)"])
            complete(.failure(error))
            if let farewell {
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(farewell)).whenComplete { _ in channel.close(promise: nil) }
            } else {
                context.close(promise: nil)
            }
        }
        scheduleDeadline(context: context)
    }

    /// Completes the dialler's promise once.
    func complete(_ result: Result<NativeConnection, any Error>) {
        established?.completeWith(result)
        established = nil
    }

    func scheduleDeadline(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        guard let deadline = handshake.deadline else { return }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = loopBound.value
            handler.perform(handler.handshake.deadlineReached(now: .now()), context: context)
        }
    }
}

/// A native protocol violation or a lost link.
public struct NativeProtocolError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
