import JunctionCore
import JunctionNative
import JunctionTransport
import NIOCore
import NIOPosix
import Synchronization

/// A hand-driven native peer for protocol tests: it runs the real handshake state
/// machine over a real socket, then writes whatever frames a test crafts.
final class RawPeer: Sendable {
    let channel: any Channel
    let received: AsyncStream<ByteBuffer>

    /// Connects to `address` (from the loopback address `source`, e.g. 127.0.0.2, when
    /// given) without a handshake.
    static func open(to address: SocketAddress, from source: String? = nil) async throws -> RawPeer {
        let (stream, sink) = AsyncStream.makeStream(of: ByteBuffer.self)
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Collector(sink: sink)) }
            }
        if let source { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0)) }
        return RawPeer(channel: try await bootstrap.connect(to: address).get(), received: stream)
    }

    /// Connects to `address` (from `source` when given) and completes the handshake as
    /// `name` dialling `target`.
    static func connect(
        to address: SocketAddress, from source: String? = nil, as name: NodeName, target: NodeName, cookie: String, flags: NativeFlags
    ) async throws -> RawPeer {
        let peer = try await open(to: address, from: source)
        try await peer.handshake(as: name, target: target, cookie: cookie, flags: flags)
        return peer
    }

    init(channel: any Channel, received: AsyncStream<ByteBuffer>) {
        self.channel = channel
        self.received = received
    }

    func handshake(as name: NodeName, target: NodeName, cookie: String, flags: NativeFlags) async throws {
        var machine = try await sendHello(as: name, target: target, cookie: cookie, flags: flags)
        var parser = FrameParser(maxFrameSize: NativeHandshake.maxFrameSize)
        for await bytes in received {
            var outcome: NativeHandshake.Action?
            try parser.consume(bytes) { frame in
                switch machine.receive(frame, now: .now()) {
                case .send(let reply): channel.writeAndFlush(reply, promise: nil)
                case let action?: outcome = action
                case nil: break
                }
            }
            switch outcome {
            case .completed: return
            case .failed(let error, _): throw error
            default: continue
            }
        }
        throw NativeProtocolError("the node closed the link during the handshake")
    }

    /// Starts a handshake as `name` dialling `target` and returns once the node has
    /// answered the hello, leaving the handshake unfinished: the node has accepted this
    /// socket and counts it as handshaking.
    func helloAnswered(as name: NodeName, target: NodeName, cookie: String) async throws {
        _ = try await sendHello(as: name, target: target, cookie: cookie, flags: [])
        for await bytes in received where bytes.readableBytes > 0 { return }
        throw NativeProtocolError("the node closed the link before answering the hello")
    }

    /// A dialler's handshake state machine, its hello written.
    private func sendHello(as name: NodeName, target: NodeName, cookie: String, flags: NativeFlags) async throws -> NativeHandshake {
        var machine = NativeHandshake(
            role: .dialler(dialled: target), local: HandshakeIdentity(name: name, cookie: Secret(cookie), flags: flags, maxMessageSize: 1 << 20),
            stepTimeout: .seconds(5))
        if case .send(let hello) = machine.start(now: .now()) { try await channel.writeAndFlush(hello) }
        return machine
    }

    /// Writes raw bytes to the node.
    func write(_ bytes: ByteBuffer) async throws {
        try await channel.writeAndFlush(bytes)
    }

    final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let sink: AsyncStream<ByteBuffer>.Continuation
        init(sink: AsyncStream<ByteBuffer>.Continuation) { self.sink = sink }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { sink.yield(unwrapInboundIn(data)) }
        func channelInactive(context: ChannelHandlerContext) {
            sink.finish()
            context.fireChannelInactive()
        }
    }
}
