import JunctionCore
import JunctionTransport
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The native network stack of one node: its acceptors and its dialler. Connections
/// are handed to the delegate (the node), which owns routing and delivery.
public final class NativeStack: Sendable {
    public let name: String
    public let settings: StackSettings
    let local: HandshakeIdentity
    let group: any EventLoopGroup
    let logger: Logger
    /// The node outlives its stacks; `unowned` avoids a reference cycle.
    unowned let delegate: any NativeStackDelegate
    let channels = Mutex<[ObjectIdentifier: any Channel]>([:])

    public init(settings: StackSettings, local: HandshakeIdentity, group: any EventLoopGroup, delegate: any NativeStackDelegate, logger: Logger) {
        self.name = settings.name
        self.settings = settings
        self.local = local
        self.group = group
        self.delegate = delegate
        var logger = logger
        logger[metadataKey: "junction.stack"] = "\(settings.name)"
        self.logger = logger
    }

    /// Binds every acceptor; returns the bound addresses (real ports for port 0).
    public func startAcceptors() async throws -> [SocketAddress] {
        var bound: [SocketAddress] = []
        for acceptor in settings.acceptors {
            let server = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(self.makeHandler(role: .acceptor, cookie: self.local.cookie, flags: self.local.flags, established: nil))
                        self.track(channel)
                    }
                }
                .bind(host: acceptor.host, port: acceptor.port)
                .get()
            track(server)
            if let address = server.localAddress { bound.append(address) }
        }
        return bound
    }

    /// Dials `route` and runs the handshake as `peer`'s dialler, offering `flags` and
    /// `maxMessageSize` (the stack's when nil); `logLevel` sets this link's log level.
    public func connect(
        to peer: NodeName, route: ResolvedRoute, cookie: Secret, flags: NativeFlags, maxMessageSize: Int? = nil, logLevel: Logger.Level? = nil
    ) async throws -> NativeConnection {
        let promise = group.next().makePromise(of: NativeConnection.self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connectTimeout(settings.handshakeTimeout.timeAmount)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            self.makeHandler(
                                role: .dialler(dialled: peer), cookie: cookie, flags: flags, established: promise, maxMessageSize: maxMessageSize,
                                logLevel: logLevel))
                    }
                }
                .connect(host: route.host, port: route.port)
                .get()
        } catch {
            promise.fail(error)
            throw error
        }
        track(channel)
        return try await promise.futureResult.get()
    }

    func makeHandler(
        role: NativeHandshake.Role, cookie: Secret, flags: NativeFlags, established: EventLoopPromise<NativeConnection>?,
        maxMessageSize: Int? = nil, logLevel: Logger.Level? = nil
    ) -> NativeLinkHandler {
        var identity = local
        identity.cookie = cookie
        identity.flags = flags
        if let maxMessageSize { identity.maxMessageSize = maxMessageSize }
        var logger = self.logger
        if let logLevel { logger.logLevel = logLevel }
        let handshake = NativeHandshake(role: role, local: identity, stepTimeout: settings.handshakeTimeout.timeAmount)
        return NativeLinkHandler(stack: self, handshake: handshake, compression: settings.compression, established: established, logger: logger)
    }

    func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        channels.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { _ in
            _ = self.channels.withLock { $0.removeValue(forKey: id) }
        }
    }

    /// Closes every acceptor and link of this stack.
    public func shutdown() async {
        let open = channels.withLock { Array($0.values) }
        for channel in open {
            try? await channel.close()
        }
    }
}
