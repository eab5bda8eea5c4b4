import JunctionCore
import Logging
import NIOCore
import JunctionTransport

/// One TCP connection of the Erlang stack: the handshake (`Len:16` messages), then
/// distribution packets (`Len:32`, zero length = tick), ticks both ways and the silence
/// deadline.
final class ErlangLinkHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase {
        case handshake(ErlangHandshake)
        case data(ErlangConnection, DistributionDecoder)
        case closed
    }

    let stack: ErlangStack
    var phase: Phase
    let established: EventLoopPromise<ErlangConnection>?
    var logger: Logger
    var inbound = ByteBuffer()
    var deadlineTask: Scheduled<Void>?
    var tickTask: RepeatedTask?
    var lastRead = NIODeadline.now()
    var failure: (any Error)?

    init(stack: ErlangStack, handshake: ErlangHandshake, established: EventLoopPromise<ErlangConnection>?, logger: Logger) {
        self.stack = stack
        self.phase = .handshake(handshake)
        self.established = established
        self.logger = logger
    }

    var direction: ErlangConnection.Direction { established == nil ? .incoming : .outgoing }

    func channelActive(context: ChannelHandlerContext) {
        guard case .handshake(var handshake) = phase else { return }
        let action = handshake.start(now: .now())
        phase = .handshake(handshake)
        scheduleDeadline(context: context, handshake: handshake)
        if let action { perform(action, context: context) }
        context.fireChannelActive()
    }

    func scheduleDeadline(context: ChannelHandlerContext, handshake: ErlangHandshake) {
        deadlineTask?.cancel()
        guard let deadline = handshake.deadline else { return }
        deadlineTask = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: deadline) {
            guard case .handshake(var handshake) = self.phase, let action = handshake.timedOut(now: .now()) else { return }
            self.phase = .handshake(handshake)
            self.perform(action, context: context)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        lastRead = .now()
        BusyPoll.touch(context.eventLoop)
        switch phase {
        case .handshake(var handshake):
            let actions = handshake.receive(&bytes, now: .now())
            phase = .handshake(handshake)
            scheduleDeadline(context: context, handshake: handshake)
            for action in actions { perform(action, context: context) }
        case .data:
            inbound.writeBuffer(&bytes)
            readPackets(context: context)
        case .closed:
            break
        }
    }

    func perform(_ action: ErlangHandshake.Action, context: ChannelHandlerContext) {
        switch action {
        case .send(let bytes):
            context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
        case .admit(let peer, let flags):
            logger[metadataKey: "junction.peer"] = "\(peer)"
            guard case .handshake(var handshake) = phase else { return }
            let admission = stack.delegate?.admit(peer: peer, address: context.channel.remoteAddress, stack: stack) ?? .notAllowed("the node is shutting down")
            logger.debug("handshake from \(peer) (flags \(flags))")
            let actions = handshake.admit(admission, now: .now())
            phase = .handshake(handshake)
            for action in actions { perform(action, context: context) }
        case .completed(let result, let send):
            deadlineTask?.cancel()
            if let send { context.writeAndFlush(wrapOutboundOut(send), promise: nil) }
            guard case .handshake(let handshake) = phase else { return }
            let connection = ErlangConnection(
                peer: result.peer, stack: stack.name, direction: direction, negotiated: result, channel: context.channel,
                coalescing: stack.settings.writeCoalescing.timeAmount)
            phase = .data(connection, DistributionDecoder(flags: result.flags, maxMessageSize: stack.settings.maxMessageSize))
            logger[metadataKey: "junction.peer"] = "\(result.peer)"
            logger.debug("handshake complete", metadata: ["junction.flags": "\(result.flags)"])
            startTicks(context: context, connection: connection)
            stack.delegate?.established(connection)
            established?.succeed(connection)
            inbound = handshake.leftover
            readPackets(context: context)
        case .failed(let error, let farewell):
            deadlineTask?.cancel()
            let level: Logger.Level = error.reason == .simultaneous ? .debug : .warning
            logger.log(level: level, "\(error)")
            stack.delegate?.handshakeFailed(stack: stack.name, reason: error.reason.rawValue)
            established?.fail(error)
            phase = .closed
            let channel = context.channel
            if let farewell {
                context.writeAndFlush(wrapOutboundOut(farewell)).whenComplete { _ in channel.close(promise: nil) }
            } else {
                context.close(promise: nil)
            }
        }
    }

    /// Ticks every quarter of the tick time when nothing else was written; declares the
    /// peer lost after a whole tick time of silence.
    func startTicks(context: ChannelHandlerContext, connection: ErlangConnection) {
        let tickTime = stack.erlang.netTickTime.timeAmount
        let interval = TimeAmount.nanoseconds(max(tickTime.nanoseconds / 4, 1_000_000))
        let channel = context.channel
        tickTask = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { task in
            guard case .data = self.phase else {
                task.cancel()
                return
            }
            if NIODeadline.now() - self.lastRead > tickTime {
                self.failure = DistributionError(
                    "\(connection.peer) sent nothing (not even a tick) for \(tickTime.nanoseconds / 1_000_000_000) s; the connection is considered lost")
                self.logger.warning("\(self.failure!)")
                channel.close(promise: nil)
                return
            }
            connection.tickIfIdle()
        }
    }

    func readPackets(context: ChannelHandlerContext) {
        guard case .data(let connection, var decoder) = phase else { return }
        defer { if case .data = phase { phase = .data(connection, decoder) } }
        let limit = stack.settings.maxMessageSize + 64
        var messages = 0
        var bytes = 0
        defer {
            connection.received.withLock {
                $0.messages += messages
                $0.bytes += bytes
                $0.lastRead = lastRead
            }
        }
        // Read once per read, not per message: the stack keeps its node behind a lock.
        let delegate = stack.delegate
        while let length = inbound.getInteger(at: inbound.readerIndex, as: UInt32.self) {
            guard Int(length) <= limit else {
                fail(DistributionError("\(connection.peer) sent a \(length)-byte packet, over the maximum message size of \(stack.settings.maxMessageSize) bytes"), context: context)
                return
            }
            guard inbound.readableBytes >= 4 + Int(length) else { break }
            inbound.moveReaderIndex(forwardBy: 4)
            bytes += 4 + Int(length)
            let packet = inbound.readSlice(length: Int(length))!
            if length == 0 {
                // Answer every tick, so hidden-node peers see traffic too.
                connection.writeTick()
                continue
            }
            do {
                if let message = try decoder.decode(packet) {
                    messages += 1
                    connection.activity.noteDelivery()
                    try delegate?.received(message, on: connection)
                }
            } catch {
                fail(error, context: context)
                return
            }
        }
        inbound.discardReadBytes()
    }

    func fail(_ error: any Error, context: ChannelHandlerContext) {
        failure = error
        logger.warning("closing the connection: \(error)")
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if case .data(let connection, _) = phase, context.channel.isWritable { connection.flush() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadlineTask?.cancel()
        tickTask?.cancel()
        switch phase {
        case .handshake:
            if let failure, CertificateManager.isTLSFailure(failure) {
                established?.fail(CertificateManager.explain(failure))
            } else {
                established?.fail(ErlangHandshakeError(reason: .malformed, detail: "the peer closed the connection during the handshake (a wrong cookie, or it refused us)"))
            }
        case .data(let connection, _):
            // Erlang distribution has no close message: an end this side did not ask
            // for is a lost connection.
            if failure == nil, !connection.closeRequested {
                failure = DistributionError("\(connection.peer) closed the connection (it stopped, or its network went away)")
            }
            connection.markClosed()
            stack.delegate?.closed(connection, error: failure)
        case .closed:
            break
        }
        phase = .closed
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if failure == nil { failure = error }
        if CertificateManager.isTLSFailure(error) { logger.warning("\(CertificateManager.explain(error))") }
        context.close(promise: nil)
    }
}
