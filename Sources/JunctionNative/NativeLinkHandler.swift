import JunctionCore
import JunctionTransport
import Logging
import NIOCore
import NIOSSL

/// What the node decides and learns about native connections. Every method is called
/// on a link's event loop and must not block.
public protocol NativeStackDelegate: AnyObject, Sendable {
    /// May this accepted socket go on to a handshake? Asked before any byte is read; false
    /// closes it at once.
    func accepts(_ channel: any Channel, stack: NativeStack) -> Bool
    /// May `peer`, connecting from `address`, connect through `stack`? Decides the cookie too.
    func admit(peer: NodeName, address: SocketAddress?, stack: NativeStack) -> NativeHandshake.Admission
    /// A connection finished its handshake (either direction).
    func established(_ connection: NativeConnection)
    /// An accepted socket joined `connection` as one of its links.
    func joined(_ channel: any Channel, to connection: NativeConnection)
    /// An established connection ended; `error` is nil for a graceful close.
    func closed(_ connection: NativeConnection, error: (any Error)?)
    /// Data frames that arrived in one read, in order.
    func received(_ frames: [Frame], on connection: NativeConnection) throws
    /// A handshake on `stack` failed (`reason` is the handshake error's reason).
    func handshakeFailed(stack: String, reason: String)
    /// An acceptor of the stack stopped listening on its own and is being bound again.
    func networkFailed(stack: String, reason: String)
    /// That acceptor listens again on `address`.
    func networkRestored(stack: String, address: SocketAddress)
}

/// The shell around one link: runs the handshake (or the join of an extra link) with
/// its deadlines, then cuts data frames in place, counts and acknowledges them for the
/// slot, and hands each read's frames to the node as one batch. A protocol error
/// closes this link only.
final class NativeLinkHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase {
        /// The main link's handshake (dialler or acceptor). An acceptor's first frame
        /// may instead be a join.
        case handshake(NativeHandshake)
        /// An extra link of ours waiting for the acceptor's answer to `request`.
        case joining(NativeConnection, LinkSlot, LinkJoin.Request)
        /// Carrying `slot` of `connection`.
        case data(NativeConnection, LinkSlot)
        case closed
    }

    let stack: NativeStack
    var phase: Phase
    var parser = FrameParser(maxFrameSize: NativeHandshake.maxFrameSize)
    var timer: Scheduled<Void>?
    /// Heartbeats and the silence check of a link carrying data.
    var heartbeats: RepeatedTask?
    var lastRead = NIODeadline.now()
    var writtenAtLastLook = 0
    var batch: [Frame] = []
    /// Frames and bytes of this read not yet added to the slot's receiver: counted under
    /// its lock once a read, in `deliver`, rather than once a frame.
    var unrecordedFrames: UInt64 = 0
    var unrecordedBytes = 0
    /// This side's compression setting for what it sends.
    let compression: CompressionSettings
    /// Completed for a dialled or joining link once it is up (then set to nil).
    var established: EventLoopPromise<NativeConnection>?
    let direction: NativeConnection.Direction
    /// Where a dialled connection can reconnect its links.
    let route: ResolvedRoute?
    /// The certificate a dialled connection presents instead of the stack's (a route's).
    let presenting: CertificateFiles?
    /// Over TLS: the fingerprint of the certificate this side presents.
    let tlsFingerprint: [UInt8]?
    /// Why the connection is being torn down, reported when its last link closes.
    var failure: (any Error)?
    var logger: Logger

    init(
        stack: NativeStack, phase: Phase, compression: CompressionSettings, established: EventLoopPromise<NativeConnection>?, route: ResolvedRoute?,
        presenting: CertificateFiles?, tlsFingerprint: [UInt8]?, logger: Logger
    ) {
        self.stack = stack
        self.phase = phase
        self.compression = compression
        self.established = established
        self.direction = established == nil ? .incoming : .outgoing
        self.route = route
        self.presenting = presenting
        self.tlsFingerprint = tlsFingerprint
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        if let peer = context.channel.remoteAddress { logger[metadataKey: "junction.address"] = "\(peer)" }
        switch phase {
        case .handshake(var handshake):
            let action = handshake.start(now: .now())
            phase = .handshake(handshake)
            perform(action, context: context)
        case .joining(let connection, let slot, let request):
            logger[metadataKey: "junction.peer"] = "\(connection.peer)"
            logger[metadataKey: "junction.slot"] = "\(slot.index)"
            context.writeAndFlush(wrapOutboundOut(LinkJoin.frame(request)), promise: nil)
            scheduleDeadline(context: context, at: .now() + stack.settings.handshakeTimeout.timeAmount)
        case .data, .closed:
            break
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        lastRead = .now()
        BusyPoll.touch(context.eventLoop)
        if case .data(_, let slot) = phase { slot.receiver.withLock { $0.lastRead = lastRead } }
        do {
            if case .data(let connection, let slot) = phase {
                // The data phase, bound once per read rather than once per frame (each
                // binding retains the connection and the slot). A frame may end it.
                try parser.consume(bytes) { frame in
                    guard case .data = phase else { return }
                    try dataFrame(frame, connection: connection, slot: slot, context: context)
                }
            } else {
                try consumeOutsideDataPhase(bytes, context: context)
            }
            if case .data(let connection, let slot) = phase { try deliver(connection: connection, slot: slot, context: context) }
        } catch {
            batch.removeAll()
            (unrecordedFrames, unrecordedBytes) = (0, 0)
            switch phase {
            case .handshake(var handshake):
                let action = handshake.malformedInput("the peer's bytes are not a Junction handshake (\(error)): it does not speak Junction's protocol")
                phase = .handshake(handshake)
                perform(action, context: context)
            case .joining(let connection, let slot, _):
                // A refused join: the rejoin logic decides what it means.
                logger.notice("joining link \(slot.index) to \(connection.peer) failed: \(error)")
                complete(.failure(error))
                phase = .closed
                context.close(promise: nil)
            default:
                protocolError(error, context: context)
            }
        }
    }

    /// Cuts a read that came before the data phase: handshake, join, or after close. A
    /// frame may move the link into the data phase; the ones after it are data frames.
    func consumeOutsideDataPhase(_ bytes: ByteBuffer, context: ChannelHandlerContext) throws {
        try parser.consume(bytes) { frame in
            switch phase {
            case .data(let connection, let slot): try dataFrame(frame, connection: connection, slot: slot, context: context)
            case .handshake(var handshake):
                if case .acceptor = handshake.role, frame.kind == NativeFrameKind.join {
                    acceptJoin(frame, context: context)
                    return
                }
                if let local = tlsFingerprint, handshake.channelBinding.isEmpty {
                    handshake.channelBinding = try channelBinding(local: local, context: context)
                }
                let action = handshake.receive(frame, now: .now())
                phase = .handshake(handshake)
                perform(action, context: context)
            case .joining(let connection, let slot, let request): try joinAnswered(frame, connection: connection, slot: slot, request: request, context: context)
            case .closed: break
            }
        }
    }

    // MARK: - data phase

    /// True for the kinds of frames handed to the node (the ones a batch may hold).
    static func isMessage(_ kind: UInt8) -> Bool {
        switch kind {
        case NativeFrameKind.sendName, NativeFrameKind.sendPid, NativeFrameKind.monitor, NativeFrameKind.demonitor, NativeFrameKind.down: true
        default: false
        }
    }

    func dataFrame(_ frame: Frame, connection: NativeConnection, slot: LinkSlot, context: ChannelHandlerContext) throws {
        if frame.kind == NativeFrameKind.ack {
            var payload = frame.payload
            guard let received = payload.readInteger(as: UInt64.self) else { throw NativeProtocolError("malformed acknowledgement from \(connection.peer)") }
            slot.outbox.acknowledge(received: received)
            return
        }
        if frame.kind == NativeFrameKind.heartbeat { return }
        unrecordedFrames += 1
        unrecordedBytes += Frame.prefixSize + frame.payload.readableBytes
        switch frame.kind {
        case _ where Self.isMessage(frame.kind):
            guard frame.flags & FrameFlags.compressed != 0 else {
                batch.append(frame)
                return
            }
            guard let inflater = slot.receiver.withLock({ $0.inflater }) else {
                throw NativeProtocolError("\(connection.peer) sent a compressed frame although compression was not negotiated")
            }
            var inflated = frame
            inflated.payload = try inflater.inflate(frame.payload, flags: frame.flags, allocator: context.channel.allocator)
            guard frame.flags & FrameFlags.batch != 0 else {
                batch.append(inflated)
                return
            }
            try FrameParser.forEachFrame(in: inflated.payload, maxFrameSize: parser.maxFrameSize) { inner in
                guard inner.flags == 0, Self.isMessage(inner.kind) else {
                    throw NativeProtocolError(
                        "\(connection.peer) sent a batch holding a frame of kind \(inner.kind) with flags \(inner.flags): a batch holds uncompressed message frames only")
                }
                batch.append(inner)
            }
        case NativeFrameKind.close:
            connection.peerClosed(slot, channel: context.channel)
        default:
            throw NativeProtocolError("unknown frame kind \(frame.kind) from \(connection.peer)")
        }
    }

    /// Hands the read's frames to the node and acknowledges the slot when due.
    func deliver(connection: NativeConnection, slot: LinkSlot, context: ChannelHandlerContext) throws {
        if !batch.isEmpty {
            let frames = batch
            batch.removeAll(keepingCapacity: true)
            connection.activity.noteDelivery()
            try stack.delegate?.received(frames, on: connection)
        }
        let (frames, bytes) = (unrecordedFrames, unrecordedBytes)
        (unrecordedFrames, unrecordedBytes) = (0, 0)
        let ack = slot.receiver.withLock { receiver -> UInt64? in
            receiver.frames += frames
            receiver.bytes += bytes
            receiver.bytesSinceAck += bytes
            guard receiver.frames - receiver.framesAtLastAck >= NativeConnection.ackEveryFrames || receiver.bytesSinceAck >= NativeConnection.ackEveryBytes
            else { return nil }
            receiver.framesAtLastAck = receiver.frames
            receiver.bytesSinceAck = 0
            return receiver.frames
        }
        if let ack {
            var buffer = context.channel.allocator.buffer(capacity: 18)
            Frame.write(kind: NativeFrameKind.ack, streamKey: 0, into: &buffer) { $0.writeInteger(ack) }
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        }
    }

    func protocolError(_ error: any Error, context: ChannelHandlerContext) {
        logger.warning("closing the link: malformed input from the peer", metadata: ["junction.error": "\(error)"])
        if case .data(let connection, _) = phase {
            // A peer that sends garbage is not trusted to rejoin: the whole connection ends.
            connection.lifecycle.withLock { $0.closing = true }
            failure = error
            connection.abort()
        }
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if case .data(_, let slot) = phase { slot.outbox.writabilityChanged(context.channel.isWritable) }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        heartbeats?.cancel()
        switch phase {
        case .data(let connection, let slot):
            slot.link.withLock { current in if current === context.channel { current = nil } }
            if connection.isClosing {
                slot.outbox.close(flushPending: false)
                if connection.slots.allSatisfy({ $0.channel == nil }), connection.markEnded() {
                    stack.forget(connection)
                    stack.delegate?.closed(connection, error: failure)
                }
            } else {
                slot.outbox.detach()
                logger.notice("link \(slot.index) to \(connection.peer) lost; \(direction == .outgoing ? "rejoining" : "waiting for the peer to rejoin")")
                stack.linkLost(connection, slot: slot, why: failure.map { "\($0)" })
            }
        case .handshake, .joining:
            complete(.failure(failure.map(CertificateManager.explain) ?? NativeProtocolError("the peer closed the link during the handshake")))
        case .closed:
            break
        }
        phase = .closed
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if CertificateManager.isTLSFailure(error) {
            failure = failure ?? error
            logger.warning("\(CertificateManager.explain(error))")
        } else {
            logger.debug("link error", metadata: ["junction.error": "\(error)"])
        }
        context.close(promise: nil)
    }

    // MARK: - handshake

    func perform(_ action: NativeHandshake.Action?, context: ChannelHandlerContext) {
        switch action {
        case nil:
            break
        case .send(let bytes):
            context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
        case .admit(let peer):
            logger[metadataKey: "junction.peer"] = "\(peer)"
            guard case .handshake(var handshake) = phase else { return }
            let admission = stack.delegate?.admit(peer: peer, address: context.channel.remoteAddress, stack: stack) ?? .reject(.notAllowed, "the node is shutting down")
            let next = handshake.admit(admission, now: .now())
            phase = .handshake(handshake)
            perform(next, context: context)
            return
        case .completed(let result, let send):
            if let send { context.writeAndFlush(wrapOutboundOut(send), promise: nil) }
            let connection = NativeConnection(
                peer: result.peer, stack: stack.name, direction: direction, negotiated: result, compression: compression, channel: context.channel,
                route: route, presenting: presenting, writeCoalescing: stack.settings.writeCoalescing.timeAmount)
            enterData(connection: connection, slot: connection.slots[0], context: context)
            logger[metadataKey: "junction.peer"] = "\(result.peer)"
            logger.debug("handshake complete", metadata: ["junction.direction": "\(direction.rawValue)", "junction.pool": "\(result.poolSize)"])
            stack.established(connection)
            complete(.success(connection))
        case .failed(let error, let farewell):
            let level: Logger.Level = error.reason == .simultaneous ? .debug : .warning
            logger.log(level: level, "handshake failed: \(error)", metadata: ["junction.reason": "\(error.reason)"])
            stack.delegate?.handshakeFailed(stack: stack.name, reason: "\(error.reason)")
            complete(.failure(error))
            phase = .closed
            if let farewell {
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(farewell)).whenComplete { _ in channel.close(promise: nil) }
            } else {
                context.close(promise: nil)
            }
        }
        if case .handshake(let handshake) = phase {
            scheduleDeadline(context: context, at: handshake.deadline)
        } else if case .data = phase {
            timer?.cancel()
        }
    }

    /// The dialler's certificate fingerprint, then the acceptor's, as TLS showed them.
    func channelBinding(local: [UInt8], context: ChannelHandlerContext) throws -> [UInt8] {
        guard let certificate = try context.pipeline.syncOperations.handler(type: NIOSSLHandler.self).peerCertificate else {
            throw NativeProtocolError("the peer presented no TLS certificate")
        }
        let peer = try CertificateManager.fingerprint(certificate)
        return direction == .outgoing ? local + peer : peer + local
    }

    func enterData(connection: NativeConnection, slot: LinkSlot, context: ChannelHandlerContext) {
        timer?.cancel()
        phase = .data(connection, slot)
        parser.maxFrameSize = connection.negotiated.maxMessageSize + NativeConnection.frameOverhead
        startHeartbeats(slot: slot, context: context)
    }

    /// Every quarter of the silence timeout: a heartbeat when nothing was written since
    /// the last look, and the link is lost when nothing was read for the whole timeout.
    func startHeartbeats(slot: LinkSlot, context: ChannelHandlerContext) {
        let timeout = stack.settings.silenceTimeout.timeAmount
        let interval = TimeAmount.nanoseconds(timeout.nanoseconds / 4)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        writtenAtLastLook = slot.outbox.bytesWritten
        lastRead = .now()
        heartbeats = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { task in
            let (handler, context) = loopBound.value
            guard case .data(let connection, _) = handler.phase else {
                task.cancel()
                return
            }
            guard NIODeadline.now() - handler.lastRead < timeout else {
                let seconds = Double(timeout.nanoseconds) / 1e9
                handler.failure = NativeProtocolError("link \(slot.index) to \(connection.peer) received nothing, not even a heartbeat, for \(seconds) s")
                handler.logger.warning("\(handler.failure!); closing it")
                task.cancel()
                context.close(promise: nil)
                return
            }
            let written = slot.outbox.bytesWritten
            defer { handler.writtenAtLastLook = written }
            guard written == handler.writtenAtLastLook else { return }
            var buffer = context.channel.allocator.buffer(capacity: Frame.prefixSize + 8)
            Frame.write(kind: NativeFrameKind.heartbeat, streamKey: 0, into: &buffer) { _ in }
            context.writeAndFlush(handler.wrapOutboundOut(buffer), promise: nil)
        }
    }

    // MARK: - joins

    /// (Acceptor) The first frame is a join: check it and attach the link to its slot.
    func acceptJoin(_ frame: Frame, context: ChannelHandlerContext) {
        guard let request = LinkJoin.parseRequest(frame.payload) else {
            refuseJoin("a malformed join", context: context)
            return
        }
        guard let connection = stack.joinable(request.connectionID) else {
            refuseJoin("a join for unknown connection \(request.connectionID) (stale, or never established)", reason: .unknownConnection, context: context)
            return
        }
        guard request.isAuthentic(sessionKey: connection.negotiated.sessionKey) else {
            refuseJoin("a join for the connection to \(connection.peer) with a wrong proof (forged)", context: context)
            return
        }
        guard request.slot < connection.slots.count else {
            refuseJoin("a join for slot \(request.slot) of a pool of \(connection.slots.count)", context: context)
            return
        }
        let slot = connection.slots[request.slot]
        guard slot.acceptJoin(counter: request.counter) else {
            refuseJoin("a replayed join for the connection to \(connection.peer) (stale counter \(request.counter))", context: context)
            return
        }
        let previous = slot.link.withLock { current -> (any Channel)? in
            defer { current = context.channel }
            return current
        }
        if let previous, previous !== context.channel {
            // The peer rejoins a link this side still thinks alive: the old one is dead.
            slot.outbox.detach()
            previous.close(promise: nil)
        }
        logger[metadataKey: "junction.peer"] = "\(connection.peer)"
        logger[metadataKey: "junction.slot"] = "\(slot.index)"
        context.writeAndFlush(wrapOutboundOut(LinkJoin.accept(request, received: slot.received, sessionKey: connection.negotiated.sessionKey)), promise: nil)
        enterData(connection: connection, slot: slot, context: context)
        slot.outbox.attach(context.channel, peerReceived: request.received)
        if slot.index == 0 || request.counter > 1 { connection.countRejoin() }
        logger.debug("link \(slot.index) joined")
        stack.delegate?.joined(context.channel, to: connection)
        closeIfConnectionClosing(connection, context: context)
    }

    func refuseJoin(_ what: String, reason: HandshakeError.Reason = .notAllowed, context: ChannelHandlerContext) {
        logger.warning("refused \(what)")
        phase = .closed
        var buffer = ByteBuffer()
        Frame.write(kind: NativeFrameKind.reject, streamKey: 0, into: &buffer) { buffer in
            buffer.writeInteger(reason.rawValue)
            NativeHandshake.writeName("join refused: \(what)", into: &buffer)
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in channel.close(promise: nil) }
    }

    /// (Dialler) The acceptor answered our join.
    func joinAnswered(_ frame: Frame, connection: NativeConnection, slot: LinkSlot, request: LinkJoin.Request, context: ChannelHandlerContext) throws {
        guard frame.kind == NativeFrameKind.joinAccept,
            let peerReceived = LinkJoin.parseAccept(frame.payload, for: request, sessionKey: connection.negotiated.sessionKey)
        else {
            var payload = frame.payload
            let reason = payload.readInteger(as: UInt8.self)
            let text = frame.kind == NativeFrameKind.reject ? NativeHandshake.readName(&payload) ?? "no reason" : "an answer that is not a valid join acceptance"
            if frame.kind == NativeFrameKind.reject, reason == HandshakeError.Reason.unknownConnection.rawValue {
                throw ConnectionForgotten(peer: connection.peer)
            }
            throw NativeProtocolError("\(connection.peer) refused link \(slot.index): \(text)")
        }
        slot.link.withLock { $0 = context.channel }
        enterData(connection: connection, slot: slot, context: context)
        slot.outbox.attach(context.channel, peerReceived: peerReceived)
        complete(.success(connection))
        closeIfConnectionClosing(connection, context: context)
    }

    /// A join that completes after the connection began to close (a close or disconnect
    /// raced with it) closes its link at once, so the connection's end is not held up by
    /// a link nobody will close.
    func closeIfConnectionClosing(_ connection: NativeConnection, context: ChannelHandlerContext) {
        if connection.isClosing { context.close(promise: nil) }
    }

    /// Completes the dialler's promise once.
    func complete(_ result: Result<NativeConnection, any Error>) {
        established?.completeWith(result)
        established = nil
    }

    func scheduleDeadline(context: ChannelHandlerContext, at deadline: NIODeadline?) {
        timer?.cancel()
        timer = nil
        guard let deadline else { return }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = loopBound.value
            switch handler.phase {
            case .handshake(var handshake):
                let action = handshake.deadlineReached(now: .now())
                handler.phase = .handshake(handshake)
                handler.perform(action, context: context)
            case .joining(let connection, let slot, _):
                handler.complete(.failure(NativeProtocolError("\(connection.peer) did not answer the join of link \(slot.index) in time")))
                context.close(promise: nil)
            case .data, .closed:
                break
            }
        }
    }
}

/// A rejoin refused because the peer no longer knows the connection (it restarted):
/// trying again cannot help, the connection is lost.
struct ConnectionForgotten: Error, CustomStringConvertible {
    let peer: NodeName
    var description: String { "\(peer) no longer knows the connection (it restarted, or ended it)" }
}

/// A native protocol violation or a lost link.
public struct NativeProtocolError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
