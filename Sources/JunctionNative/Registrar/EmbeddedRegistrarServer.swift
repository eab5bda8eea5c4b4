import JunctionCore
import JunctionTerm
import JunctionTransport
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The embedded registrar server: one per host and port, on loopback. Nodes register
/// their alive name over a connection they keep open; the name is freed when that
/// connection closes. A second registration of a live name is refused.
public final class EmbeddedRegistrarServer: Sendable {
    struct Entry: Sendable {
        var registration: Registration
        var owner: ObjectIdentifier
    }

    let entries = Mutex<[String: Entry]>([:])
    let serverChannel: any Channel
    let clients = Mutex<[ObjectIdentifier: any Channel]>([:])
    let logger: Logger

    /// The port it listens on.
    public var port: Int { serverChannel.localAddress?.port ?? 0 }

    /// Binds `host:port`; throws if the address is in use (another server is there).
    public static func start(host: String, port: Int, group: any EventLoopGroup, logger: Logger) async throws -> EmbeddedRegistrarServer {
        let holder = ServerHolder()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard let server = holder.server.withLock({ $0 }) else { throw RegistrarError("registrar server is starting") }
                    try channel.pipeline.syncOperations.addHandler(RegistrarServerHandler(server: server))
                    server.clients.withLock { $0[ObjectIdentifier(channel)] = channel }
                }
            }
            .bind(host: host, port: port)
            .get()
        let server = EmbeddedRegistrarServer(channel: channel, logger: logger)
        holder.server.withLock { $0 = server }
        return server
    }

    init(channel: any Channel, logger: Logger) {
        self.serverChannel = channel
        self.logger = logger
    }

    func handle(_ request: Term, from client: ObjectIdentifier) -> Term {
        guard case .tuple(let elements) = request, case .atom(let verb)? = elements.first,
            elements.count >= 2, case .binary(let aliveBytes) = elements[1]
        else { return .tuple([.atom("error"), .binary(Array("malformed request".utf8))]) }
        let alive = String(decoding: aliveBytes, as: UTF8.self)
        switch verb {
        case "register":
            guard let registration = Registration(elements.dropFirst(2)) else {
                return .tuple([.atom("error"), .binary(Array("malformed registration".utf8))])
            }
            let refused = entries.withLock { entries -> Bool in
                if let existing = entries[alive], existing.owner != client { return true }
                entries[alive] = Entry(registration: registration, owner: client)
                return false
            }
            if refused {
                return .tuple([.atom("error"), .binary(Array("the name '\(alive)' is already registered on this host by a running node; pick another name or stop that node".utf8))])
            }
            logger.debug("registered", metadata: ["junction.alive": "\(alive)", "junction.port": "\(registration.port)"])
            return .atom("ok")
        case "unregister":
            // Answered before the owner closes, so the name is free when its `shutdown`
            // returns (a close alone frees it only once the server has read the close).
            entries.withLock { entries in
                if entries[alive]?.owner == client { entries[alive] = nil }
            }
            return .atom("ok")
        case "resolve":
            guard let entry = entries.withLock({ $0[alive] }) else { return .tuple([.atom("error"), .atom("not_found")]) }
            return .tuple([.atom("ok")] + entry.registration.term.tupleElements)
        default:
            return .tuple([.atom("error"), .binary(Array("unknown request '\(verb)'".utf8))])
        }
    }

    func disconnected(_ client: ObjectIdentifier) {
        entries.withLock { entries in entries = entries.filter { $0.value.owner != client } }
        _ = clients.withLock { $0.removeValue(forKey: client) }
    }

    /// Stops listening and drops every registration connection, so clients take over.
    public func shutdown() async {
        try? await serverChannel.close()
        for client in clients.withLock({ Array($0.values) }) { try? await client.close() }
    }
}

/// Lets the child initializer reach the server object created after `bind` returns.
final class ServerHolder: Sendable {
    let server = Mutex<EmbeddedRegistrarServer?>(nil)
}

final class RegistrarServerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let server: EmbeddedRegistrarServer
    var parser = FrameParser(maxFrameSize: RegistrarMessage.maxFrameSize)
    /// Closes a client that started a request and stalled: requests are a few hundred
    /// bytes on loopback, sent in one write.
    var stalled: Scheduled<Void>?
    static let partialRequestDeadline = TimeAmount.seconds(2)

    init(server: EmbeddedRegistrarServer) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let client = ObjectIdentifier(context.channel)
        do {
            try parser.consume(unwrapInboundIn(data)) { frame in
                let reply = server.handle(try ETF.decode(frame.payload), from: client)
                context.write(wrapOutboundOut(RegistrarMessage.response(reply)), promise: nil)
            }
            context.flush()
            stalled?.cancel()
            stalled = nil
            if parser.bufferedBytes > 0 {
                let channel = context.channel
                let logger = server.logger
                stalled = context.eventLoop.scheduleTask(in: Self.partialRequestDeadline) {
                    logger.warning("closing a registrar client that sent part of a request and stalled")
                    channel.close(promise: nil)
                }
            }
        } catch {
            server.logger.warning("closing a registrar client that sent malformed input", metadata: ["junction.error": "\(error)"])
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        stalled?.cancel()
        server.disconnected(ObjectIdentifier(context.channel))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

extension Term {
    var tupleElements: [Term] {
        if case .tuple(let elements) = self { return elements }
        return [self]
    }
}
