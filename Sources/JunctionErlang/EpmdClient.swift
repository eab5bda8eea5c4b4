import NIOCore
import NIOPosix

/// Talks to the epmd of one host: registers a node (the registration lasts as long as its
/// connection), resolves names to ports, lists names.
public struct EpmdClient: Sendable {
    public let host: String
    public let port: Int
    let group: any EventLoopGroup
    let timeout: TimeAmount

    public init(host: String = "127.0.0.1", port: Int = EpmdProtocol.defaultPort, group: any EventLoopGroup, timeout: TimeAmount = .seconds(5)) {
        self.host = host
        self.port = port
        self.group = group
        self.timeout = timeout
    }

    /// The port and versions of `alive` on this host, or nil when it is not registered.
    public func resolve(_ alive: String) async throws -> EpmdProtocol.Entry? {
        let reply = try await exchange(EpmdProtocol.encodePortPlease(alive), until: nil)
        return try EpmdProtocol.decodePortReply(reply.buffer, alive: alive)
    }

    /// The names registered on this host and their ports.
    public func names() async throws -> [(name: String, port: Int)] {
        try EpmdProtocol.decodeNamesReply(try await exchange(EpmdProtocol.encodeNames(), until: nil).buffer)
    }

    /// Registers `entry`; the name stays registered until the returned registration is
    /// closed or its connection drops.
    public func register(_ entry: EpmdProtocol.Entry) async throws -> EpmdRegistration {
        let reply = try await exchange(EpmdProtocol.encodeAlive2(entry), until: { buffer throws(EpmdProtocol.Failure) in
            try EpmdProtocol.decodeAlive2Reply(buffer) != nil
        })
        // Complete by now: `until` said so.
        let creation = try EpmdProtocol.decodeAlive2Reply(reply.buffer)!
        return EpmdRegistration(alive: entry.alive, creation: creation, channel: reply.channel)
    }

    /// Sends `request` and collects the reply: until `complete` says so (the connection
    /// stays open) or, without it, until epmd closes the connection.
    func exchange(
        _ request: ByteBuffer, until complete: (@Sendable (ByteBuffer) throws(EpmdProtocol.Failure) -> Bool)?
    ) async throws -> (buffer: ByteBuffer, channel: any Channel) {
        let source = "epmd at \(host):\(port)"
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(timeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connect(host: host, port: port).get()
        } catch {
            throw EpmdProtocol.Failure("cannot reach \(source): \(error); is epmd (or a Junction node with the embedded epmd) running?")
        }
        let promise = channel.eventLoop.makePromise(of: ByteBuffer.self)
        let collector = EpmdReplyCollector(complete: complete, reply: promise, source: source)
        let timeout = self.timeout
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(EpmdProtocol.Failure("\(source) did not answer within \(timeout.nanoseconds / 1_000_000) ms"))
        }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        do {
            try await channel.pipeline.addHandler(collector).get()
            try await channel.writeAndFlush(request).get()
            let buffer = try await promise.futureResult.get()
            if complete == nil { try? await channel.close() }
            return (buffer, channel)
        } catch {
            try? await channel.close()
            throw error
        }
    }
}

/// A node's registration with epmd: closing it unregisters the name.
public final class EpmdRegistration: Sendable {
    public let alive: String
    /// The creation epmd gave this incarnation; every pid and reference minted uses it.
    public let creation: UInt32
    let channel: any Channel

    init(alive: String, creation: UInt32, channel: any Channel) {
        self.alive = alive
        self.creation = creation
        self.channel = channel
    }

    /// Completes when the registration ends (closed here, or epmd went away).
    public var ended: EventLoopFuture<Void> { channel.closeFuture }

    public func close() async {
        try? await channel.close()
    }
}

/// Accumulates epmd's reply bytes and fulfils `reply` once complete.
final class EpmdReplyCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    let complete: (@Sendable (ByteBuffer) throws(EpmdProtocol.Failure) -> Bool)?
    let reply: EventLoopPromise<ByteBuffer>
    let source: String
    var buffer = ByteBuffer()
    var done = false

    init(complete: (@Sendable (ByteBuffer) throws(EpmdProtocol.Failure) -> Bool)?, reply: EventLoopPromise<ByteBuffer>, source: String) {
        self.complete = complete
        self.reply = reply
        self.source = source
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        buffer.writeBuffer(&bytes)
        // A NAMES listing of a busy host is a few KiB; anything far past that is not epmd.
        if !done, buffer.readableBytes > 1 << 20 {
            done = true
            reply.fail(EpmdProtocol.Failure("\(source) sent more than 1 MiB in answer; it is not epmd"))
            context.close(promise: nil)
            return
        }
        guard !done, let complete else { return }
        do {
            if try complete(buffer) {
                done = true
                reply.succeed(buffer)
            }
        } catch {
            done = true
            reply.fail(error)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done {
            done = true
            if complete == nil {
                reply.succeed(buffer)
            } else {
                reply.fail(EpmdProtocol.Failure("\(source) closed the connection before answering the registration"))
            }
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !done {
            done = true
            reply.fail(error)
        }
        context.close(promise: nil)
    }
}
