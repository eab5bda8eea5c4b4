import JunctionCore
import JunctionTerm
import JunctionTransport
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A native stack's registrar client: registers the node with the embedded registrar
/// server of its host (starting that server when none runs), keeps the registration
/// connection open, takes over when the server goes away, and resolves names by asking
/// the registrar of the name's host.
public final class EmbeddedRegistrar: Sendable {
    /// What happened to this node's registration.
    public enum Event: Sendable, Hashable {
        /// Registered; `server` is true when this node runs the registrar server.
        case registered(server: Bool)
        /// The registrar connection was lost; a takeover follows.
        case lost
    }

    struct State: Sendable {
        var connection: RegistrarClient?
        var server: EmbeddedRegistrarServer?
        var registration: (alive: String, entry: Registration)?
        var watcher: Task<Void, Never>?
        var shuttingDown = false
    }

    public let stack: String
    let settings: RegistrarSettings
    let group: any EventLoopGroup
    let logger: Logger
    let state = Mutex(State())
    public let events: AsyncStream<Event>
    let eventSink: AsyncStream<Event>.Continuation
    /// Attempts to reach or become the server before registration fails.
    static let attempts = 50

    public init(stack: String, settings: RegistrarSettings, group: any EventLoopGroup, logger: Logger) {
        self.stack = stack
        self.settings = settings
        self.group = group
        self.logger = logger
        (events, eventSink) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(64))
    }

    /// True when this node currently runs the registrar server.
    public var isServer: Bool { state.withLock { $0.server != nil } }

    /// Registers `alive` as listening on `port`, and keeps it registered until `shutdown`.
    public func register(alive: String, port: Int, tls: Bool = false, handshakeVersion: Int, protocolVersion: Int) async throws {
        state.withLock { $0.registration = (alive, Registration(port: port, tls: tls, handshakeVersion: handshakeVersion, protocolVersion: protocolVersion)) }
        let channel = try await establish()
        let watcher = Task { await self.watch(channel) }
        state.withLock { $0.watcher = watcher }
    }

    /// Follows the registration connection; when it drops, takes over and re-registers.
    func watch(_ first: any Channel) async {
        var channel = first
        while true {
            try? await channel.closeFuture.get()
            guard !state.withLock({ $0.shuttingDown }) else { return }
            eventSink.yield(.lost)
            logger.notice("lost the registrar connection; re-registering (taking over the registrar if it is gone)")
            do {
                channel = try await establish()
            } catch {
                // Stopping while re-registering is no failure.
                if !state.withLock({ $0.shuttingDown }) { logger.error("could not re-register with the registrar: \(error)") }
                return
            }
        }
    }

    /// Connects to the registrar (starting the server when nobody listens) and registers.
    func establish() async throws -> any Channel {
        guard let (alive, entry) = state.withLock({ $0.registration }) else { throw RegistrarError("nothing to register") }
        let request = Term.tuple([.atom("register"), .binary(Array(alive.utf8))] + entry.term.tupleElements)
        for attempt in 0..<Self.attempts {
            try Task.checkCancellation()
            if let client = try? await RegistrarClient.connect(host: settings.host, port: settings.port, group: group) {
                let reply = try await client.request(request)
                guard reply == .atom("ok") else {
                    try? await client.channel.close()
                    throw RegistrarError("registrar at \(settings.host):\(settings.port) refused '\(alive)': \(Self.text(of: reply))")
                }
                let stopping = state.withLock { state in
                    if !state.shuttingDown { state.connection = client }
                    return state.shuttingDown
                }
                if stopping {
                    try? await client.channel.close()
                    throw CancellationError()
                }
                let server = isServer
                logger.debug("registered '\(alive)' with the registrar at \(settings.host):\(settings.port)\(server ? " (this node runs it)" : "")")
                eventSink.yield(.registered(server: server))
                return client.channel
            }
            if let server = try? await EmbeddedRegistrarServer.start(host: settings.host, port: settings.port, group: group, logger: logger) {
                let stale = state.withLock { state -> EmbeddedRegistrarServer? in
                    defer { state.server = server }
                    return state.server
                }
                await stale?.shutdown()
                logger.info("started the embedded registrar server on \(settings.host):\(settings.port)")
                continue
            }
            // Another node bound the port first; give it a moment to start serving.
            try await Task.sleep(for: .milliseconds(20 * min(attempt + 1, 10)))
        }
        throw RegistrarError("cannot reach or start the registrar on \(settings.host):\(settings.port); is another program using that port?")
    }

    /// Where `node` listens, asked of the registrar on the node's host.
    public func resolve(_ node: NodeName) async throws -> ResolvedRoute {
        let client: RegistrarClient
        do {
            client = try await RegistrarClient.connect(host: node.host, port: settings.port, group: group)
        } catch {
            throw RegistrarError("no registrar answers on \(node.host):\(settings.port) (stack \(stack)): \(error)")
        }
        defer { client.channel.close(promise: nil) }
        let reply = try await client.request(.tuple([.atom("resolve"), .binary(Array(node.alive.utf8))]))
        guard case .tuple(let elements) = reply, elements.first == .atom("ok"), let entry = Registration(elements.dropFirst()) else {
            throw RegistrarError("'\(node.alive)' is not registered with the registrar on \(node.host):\(settings.port) (stack \(stack))")
        }
        return ResolvedRoute(
            stack: stack, host: node.host, port: entry.port, tls: entry.tls, handshakeVersion: entry.handshakeVersion,
            protocolVersion: entry.protocolVersion)
    }

    /// Unregisters (the server answers before the registration connection closes, so
    /// the name is free when this returns) and stops the server if this node runs it, so
    /// another node takes over.
    public func shutdown() async {
        let (connection, watcher, alive) = state.withLock { state in
            state.shuttingDown = true
            defer { state.connection = nil }
            return (state.connection, state.watcher, state.registration?.0)
        }
        // The watcher returns once its connection has closed, or stops re-registering
        // (which registers nothing once shutting down): so it is done before the node's
        // event loops are, and any server it started is stopped here.
        watcher?.cancel()
        if let connection, let alive {
            _ = try? await connection.request(.tuple([.atom("unregister"), .binary(Array(alive.utf8))]), timeout: .seconds(1))
        }
        try? await connection?.channel.close()
        await watcher?.value
        let server = state.withLock { state in
            defer { state.server = nil }
            return state.server
        }
        await server?.shutdown()
        eventSink.finish()
    }

    static func text(of reply: Term) -> String {
        if case .tuple(let elements) = reply, elements.count == 2, case .binary(let bytes) = elements[1] {
            return String(decoding: bytes, as: UTF8.self)
        }
        return "\(reply)"
    }
}

/// One request/response connection to a registrar server.
struct RegistrarClient: Sendable {
    let channel: any Channel
    let handler: NIOLoopBound<RegistrarClientHandler>

    static func connect(host: String, port: Int, group: any EventLoopGroup) async throws -> RegistrarClient {
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(.seconds(2))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(RegistrarClientHandler()) }
            }
            .connect(host: host, port: port)
            .get()
        let handler = try await channel.eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: RegistrarClientHandler.self), eventLoop: channel.eventLoop)
        }.get()
        return RegistrarClient(channel: channel, handler: handler)
    }

    /// The registrar's answer to `term`. A registrar that does not answer within
    /// `timeout` (something else on its port, or a hung process) fails the request, and
    /// the connection is closed.
    func request(_ term: Term, timeout: TimeAmount = .seconds(5)) async throws -> Term {
        let handler = self.handler
        let channel = self.channel
        return try await channel.eventLoop.flatSubmit {
            let promise = channel.eventLoop.makePromise(of: Term.self)
            handler.value.waiting.append(promise)
            channel.writeAndFlush(RegistrarMessage.frame(term), promise: nil)
            let deadline = channel.eventLoop.scheduleTask(in: timeout) {
                let address = channel.remoteAddress.map { "\($0)" } ?? "?"
                handler.value.failWaiting(
                    RegistrarError("the registrar at \(address) did not answer within \(timeout.nanoseconds / 1_000_000) ms; is something else listening on its port?"))
                channel.close(promise: nil)
            }
            promise.futureResult.whenComplete { _ in deadline.cancel() }
            return promise.futureResult
        }.get()
    }
}

final class RegistrarClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var parser = FrameParser(maxFrameSize: RegistrarMessage.maxFrameSize)
    var waiting: [EventLoopPromise<Term>] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try parser.consume(unwrapInboundIn(data)) { frame in
                let term = try ETF.decode(frame.payload)
                guard !waiting.isEmpty else { throw RegistrarError("unexpected registrar response") }
                waiting.removeFirst().succeed(term)
            }
        } catch {
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failWaiting(RegistrarError("the registrar closed the connection"))
        context.fireChannelInactive()
    }

    func failWaiting(_ error: RegistrarError) {
        let promises = waiting
        waiting.removeAll()
        for promise in promises { promise.fail(error) }
    }
}
