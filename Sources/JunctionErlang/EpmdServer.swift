import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// An epmd-compatible port mapper, run by a node when nothing listens on the epmd port
/// (as OTP and Ergo do). Real `erl` nodes register with it and resolve through it:
/// ALIVE2 (kept for the life of the registering connection), PORT_PLEASE2 and NAMES.
public final class EpmdServer: Sendable {
    struct Registered: Sendable {
        var entry: EpmdProtocol.Entry
        var creation: UInt32
        var connection: ObjectIdentifier
    }

    struct State: Sendable {
        var names: [String: Registered] = [:]
        /// Seeded with the current UNIX time and bumped on every registration, so a name
        /// registered again gets a new creation (never 0).
        var nextCreation: UInt32
    }

    let state: Mutex<State>
    let logger: Logger
    let channel: any Channel

    /// The address the server listens on.
    public var address: SocketAddress? { channel.localAddress }

    init(channel: any Channel, state: State, logger: Logger) {
        self.channel = channel
        self.state = Mutex(state)
        self.logger = logger
    }

    /// Starts listening on `host:port`. Throws when the port is taken (another epmd).
    public static func start(host: String = "127.0.0.1", port: Int = EpmdProtocol.defaultPort, group: any EventLoopGroup, logger: Logger) async throws -> EpmdServer {
        let seed = UInt32(truncatingIfNeeded: Int(Date().timeIntervalSince1970))
        let state = State(nextCreation: max(seed, 1))
        let box = ServerBox()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(EpmdServerHandler(server: box))
                }
            }
            .bind(host: host, port: port).get()
        let server = EpmdServer(channel: channel, state: state, logger: logger)
        box.server.withLock { $0 = server }
        logger.info("embedded epmd listens on \(host):\(channel.localAddress?.port ?? port)")
        return server
    }

    public func shutdown() async {
        try? await channel.close()
    }

    /// The names registered now, with their ports.
    public var names: [(name: String, port: Int)] {
        state.withLock { $0.names.values.map { ($0.entry.alive, Int($0.entry.port)) } }.sorted { $0.name < $1.name }
    }

    func register(_ entry: EpmdProtocol.Entry, connection: ObjectIdentifier) -> UInt32? {
        state.withLock { state in
            guard state.names[entry.alive] == nil else { return nil }
            let creation = state.nextCreation
            state.nextCreation = creation == UInt32.max ? 1 : creation + 1
            state.names[entry.alive] = Registered(entry: entry, creation: creation, connection: connection)
            return creation
        }
    }

    func unregister(connection: ObjectIdentifier) {
        let removed = state.withLock { state -> String? in
            guard let (name, _) = state.names.first(where: { $0.value.connection == connection }) else { return nil }
            state.names[name] = nil
            return name
        }
        if let removed { logger.debug("epmd: '\(removed)' unregistered") }
    }

    func lookup(_ alive: String) -> EpmdProtocol.Entry? {
        state.withLock { $0.names[alive]?.entry }
    }
}

/// Lets child handlers reach the server, which exists only once the bind succeeded.
final class ServerBox: Sendable {
    let server = Mutex<EpmdServer?>(nil)
}

/// One connection to the embedded epmd: one request, answered as epmd answers it.
final class EpmdServerHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let box: ServerBox
    var buffer = ByteBuffer()
    var handled = false
    var registered = false
    var stalled: Scheduled<Void>?
    /// The longest request epmd has: ALIVE2 with a 255-character UTF-8 name and extra.
    static let maxRequestSize = 4096
    /// A request is one small write: a peer that sends part of one and stalls is closed.
    static let partialRequestDeadline = TimeAmount.seconds(2)

    init(server: ServerBox) { self.box = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        guard !handled else { return }
        buffer.writeBuffer(&bytes)
        if let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self), Int(length) > Self.maxRequestSize {
            box.server.withLock { $0 }?.logger.notice("epmd: closed a connection that announced a \(length)-byte request (at most \(Self.maxRequestSize))")
            handled = true
            context.close(promise: nil)
            return
        }
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self), buffer.readableBytes >= 2 + Int(length) else {
            if stalled == nil {
                let channel = context.channel
                stalled = context.eventLoop.scheduleTask(in: Self.partialRequestDeadline) { channel.close(promise: nil) }
            }
            return
        }
        stalled?.cancel()
        handled = true
        buffer.moveReaderIndex(forwardBy: 2)
        var request = buffer.readSlice(length: Int(length))!
        guard let server = box.server.withLock({ $0 }), let tag = request.readInteger(as: UInt8.self) else {
            context.close(promise: nil)
            return
        }
        switch tag {
        case EpmdProtocol.alive2Request:
            alive2(&request, server: server, context: context)
        case EpmdProtocol.portPleaseRequest:
            let alive = request.readString(length: request.readableBytes) ?? ""
            var reply = context.channel.allocator.buffer(capacity: 32)
            reply.writeInteger(EpmdProtocol.portResponse)
            if let entry = server.lookup(alive) {
                reply.writeInteger(UInt8(0))
                EpmdProtocol.writeEntryFields(entry, into: &reply)
            } else {
                reply.writeInteger(UInt8(1))
            }
            answerAndClose(reply, context: context)
        case EpmdProtocol.namesRequest:
            var reply = context.channel.allocator.buffer(capacity: 64)
            reply.writeInteger(UInt32(context.channel.localAddress?.port ?? EpmdProtocol.defaultPort))
            for (name, port) in server.names { reply.writeString("name \(name) at port \(port)\n") }
            answerAndClose(reply, context: context)
        default:
            server.logger.debug("epmd: request \(tag) is not supported by the embedded epmd; closing")
            context.close(promise: nil)
        }
    }

    func alive2(_ request: inout ByteBuffer, server: EpmdServer, context: ChannelHandlerContext) {
        guard Self.isLocal(context.channel) else {
            // epmd ignores registrations from other hosts.
            server.logger.notice("epmd: ignored a registration from \(context.channel.remoteAddress?.description ?? "?"), which is not this host")
            context.close(promise: nil)
            return
        }
        guard let entry = EpmdProtocol.readEntryFields(&request), !entry.alive.isEmpty else {
            context.close(promise: nil)
            return
        }
        let creation = server.register(entry, connection: ObjectIdentifier(context.channel))
        registered = creation != nil
        var reply = context.channel.allocator.buffer(capacity: 6)
        if entry.highestVersion >= 6 {
            reply.writeMultipleIntegers(EpmdProtocol.alive2ExtendedResponse, UInt8(creation == nil ? 1 : 0), creation ?? 99)
        } else {
            reply.writeMultipleIntegers(EpmdProtocol.alive2Response, UInt8(creation == nil ? 1 : 0), UInt16(creation.map { $0 % 3 + 1 } ?? 99))
        }
        if let creation {
            server.logger.debug("epmd: '\(entry.alive)' registered on port \(entry.port), creation \(creation)")
            context.writeAndFlush(wrapOutboundOut(reply), promise: nil)
        } else {
            server.logger.notice("epmd: refused to register '\(entry.alive)': the name is taken")
            answerAndClose(reply, context: context)
        }
    }

    func answerAndClose(_ reply: ByteBuffer, context: ChannelHandlerContext) {
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(reply)).whenComplete { _ in channel.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        stalled?.cancel()
        if registered, let server = box.server.withLock({ $0 }) { server.unregister(connection: ObjectIdentifier(context.channel)) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// A loopback peer, or one that reached us on its own address.
    static func isLocal(_ channel: any Channel) -> Bool {
        guard let remote = channel.remoteAddress?.ipAddress else { return false }
        if remote.hasPrefix("127.") || remote == "::1" || remote == "::ffff:127.0.0.1" { return true }
        return remote == channel.localAddress?.ipAddress
    }
}
