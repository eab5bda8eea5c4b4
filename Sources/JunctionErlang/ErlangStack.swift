import JunctionCore
import JunctionTransport
import Logging
import NIOCore
import NIOSSL
import Synchronization

/// What the node decides and learns about the Erlang stack's connections.
public protocol ErlangStackDelegate: AnyObject, Sendable {
    /// May this accepted socket go on to a handshake? Asked before any byte is read; false
    /// closes it at once.
    func accepts(_ channel: any Channel, stack: ErlangStack) -> Bool
    /// An Erlang node is connecting from `address`: accept it (with the cookie for it) or not.
    func admit(peer: NodeName, address: SocketAddress?, stack: ErlangStack) -> ErlangHandshake.Admission
    func established(_ connection: ErlangConnection)
    /// One distribution message; throwing closes that connection only.
    func received(_ message: DistributionMessage, on connection: ErlangConnection) throws
    func closed(_ connection: ErlangConnection, error: (any Error)?)
    /// A handshake on `stack` failed (`reason` is the handshake error's reason).
    func handshakeFailed(stack: String, reason: String)
    /// The stack's acceptor stopped listening on its own and is being bound again.
    func networkFailed(stack: String, reason: String)
    /// It listens again on `address` (the same port, so the epmd registration holds).
    func networkRestored(stack: String, address: SocketAddress)
}

/// The Erlang distribution stack of one node: an acceptor registered with epmd (the
/// embedded one when none runs), a resolver asking each host's epmd, and a dialler.
public final class ErlangStack: Sendable {
    public let name: String
    public let settings: StackSettings
    public var erlang: ErlangSettings { settings.erlang }
    let nodeName: NodeName
    let cookie: Secret
    let group: any EventLoopGroup
    let logger: Logger
    /// The node, until the stack shuts down: a late callback after that (a rejoin that
    /// gives up, a link closing) has no one to tell. Held strongly and let go at shutdown
    /// rather than held weakly: a weak reference gives the node a side table, and every
    /// retain and release of it then takes the runtime's slow path (15% of a sending
    /// thread's time with 1 KiB messages).
    let node: Mutex<(any ErlangStackDelegate)?>
    var delegate: (any ErlangStackDelegate)? { node.withLock { $0 } }
    let runtime: Mutex<Runtime>
    /// Contexts for `settings.tls` (TLS distribution); nil: plain TCP.
    let tls: CertificateManager?

    struct Runtime: Sendable {
        var creation: UInt32
        var registered = false
        var port: Int?
        var registration: EpmdRegistration?
        var server: EpmdServer?
        var channels: [ObjectIdentifier: any Channel] = [:]
        var acceptor: Acceptor?
        var stopping = false
    }

    /// `creation` serves until epmd gives one (a node that does not register keeps it).
    /// Throws when `settings.tls` names files that do not load.
    public init(
        settings: StackSettings, name: NodeName, cookie: Secret, creation: UInt32, group: any EventLoopGroup, delegate: any ErlangStackDelegate, logger: Logger
    ) throws {
        self.tls = try settings.tls.map { try CertificateManager(settings: $0, logger: logger) }
        self.name = settings.name
        self.settings = settings
        self.nodeName = name
        self.cookie = cookie
        self.group = group
        self.node = Mutex(delegate)
        var logger = logger
        logger[metadataKey: "junction.stack"] = "\(settings.name)"
        self.logger = logger
        self.runtime = Mutex(Runtime(creation: creation))
    }

    /// The creation epmd gave this node (the one given at init before `start`).
    public var creation: UInt32 { runtime.withLock { $0.creation } }

    /// Whether this node runs the host's epmd.
    public var runsEpmd: Bool { runtime.withLock { $0.server != nil } }

    /// The flags this node offers.
    public var flags: DistributionFlags {
        erlang.hidden ? DistributionFlags.offered : DistributionFlags.offered.union(.published)
    }

    var epmd: EpmdClient { EpmdClient(host: erlang.epmdHost, port: erlang.epmdPort, group: group, timeout: settings.handshakeTimeout.timeAmount) }

    /// Binds the acceptor and registers with epmd (starting the embedded one when nothing
    /// listens on the epmd port), which fixes `creation`. Returns the bound address. It
    /// accepts once `openAcceptor()` is called.
    public func start() async throws -> SocketAddress {
        let settings = settings.acceptors.first ?? AcceptorSettings()
        let events = Acceptor.Events(
            failed: { self.delegate?.networkFailed(stack: self.name, reason: $0) }, restored: { self.delegate?.networkRestored(stack: self.name, address: $0) })
        let acceptor = Acceptor(group: group, host: settings.host, port: settings.port, events: events, logger: logger) {
            self.delegate?.accepts($0, stack: self) ?? false
        } setUp: { channel in
            if let side = self.tls?.serverSide() { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: side.context)) }
            try channel.pipeline.syncOperations.addHandler(self.makeHandler(role: .acceptor, cookie: nil, established: nil))
            self.track(channel)
        }
        let address = try await acceptor.start()
        runtime.withLock {
            $0.port = address.port
            $0.acceptor = acceptor
        }
        try await register()
        return address
    }

    /// Starts accepting: Erlang nodes that connected since `start()` wait in the backlog
    /// until then.
    public func openAcceptor() {
        runtime.withLock { $0.acceptor }?.open()
    }

    /// Registers this node's name and port, as a client of the host's epmd or, when
    /// nothing answers there, by running the embedded one.
    func register() async throws {
        guard let port = runtime.withLock({ $0.port }) else { return }
        let entry = EpmdProtocol.Entry(alive: nodeName.alive, port: UInt16(port), hidden: erlang.hidden)
        let registration: EpmdRegistration
        do {
            registration = try await epmd.register(entry)
        } catch let error as EpmdProtocol.Failure where erlang.embeddedEpmd && error.description.hasPrefix("cannot reach") {
            do {
                let server = try await EpmdServer.start(host: erlang.epmdHost, port: erlang.epmdPort, group: group, logger: logger)
                runtime.withLock { $0.server = server }
            } catch {
                // Another process started an epmd meanwhile: register with it.
                logger.debug("could not start the embedded epmd (\(error)); registering with the one that started meanwhile")
            }
            registration = try await epmd.register(entry)
        }
        let stopping = runtime.withLock { runtime -> Bool in
            if !runtime.registered { runtime.creation = registration.creation }
            runtime.registered = true
            runtime.registration = registration
            return runtime.stopping
        }
        if stopping {
            await registration.close()
            return
        }
        registration.ended.whenComplete { _ in self.registrationEnded(registration) }
    }

    /// epmd went away (its node stopped): register again, running epmd if nobody else
    /// does, so Erlang nodes can still find this one.
    func registrationEnded(_ registration: EpmdRegistration) {
        guard runtime.withLock({ !$0.stopping && $0.registration === registration }) else { return }
        logger.notice("the registration with epmd at \(erlang.epmdHost):\(erlang.epmdPort) ended; registering again")
        Task {
            for attempt in 0..<8 {
                do {
                    try await self.register()
                    return
                } catch {
                    self.logger.warning("registering with epmd failed (attempt \(attempt + 1)): \(error)")
                    try? await Task.sleep(for: .milliseconds(100 << attempt))
                }
            }
        }
    }

    /// Asks the epmd of `peer`'s host where it listens.
    public func resolve(_ peer: NodeName) async throws -> ResolvedRoute {
        let client = EpmdClient(host: peer.host, port: erlang.epmdPort, group: group, timeout: settings.handshakeTimeout.timeAmount)
        guard let entry = try await client.resolve(peer.alive) else {
            throw EpmdProtocol.Failure("epmd at \(peer.host):\(erlang.epmdPort) has no node named '\(peer.alive)'; is \(peer) running?")
        }
        guard entry.highestVersion >= 6 else {
            throw EpmdProtocol.Failure("\(peer) speaks distribution versions \(entry.lowestVersion)...\(entry.highestVersion); this node needs version 6 (OTP 23 or later)")
        }
        return ResolvedRoute(stack: name, host: peer.host, port: Int(entry.port), handshakeVersion: Int(entry.highestVersion), protocolVersion: 0)
    }

    /// Dials `route` and runs the handshake as `peer`'s initiator with `cookie`;
    /// `logLevel` (a route's) sets this connection's log level. Over TLS it presents
    /// `certificate` (a route's) or the stack's.
    public func connect(
        to peer: NodeName, route: ResolvedRoute, cookie: Secret?, logLevel: Logger.Level? = nil, certificate: CertificateFiles? = nil
    ) async throws -> ErlangConnection {
        let promise = group.next().makePromise(of: ErlangConnection.self)
        let side = try tls?.clientSide(presenting: certificate)
        let channel = await dial(group: group, host: route.host, port: route.port, timeout: settings.handshakeTimeout.timeAmount, failing: promise) {
            if let side { try $0.addHandler(try NIOSSLClientHandler(context: side.context, serverHostname: nil)) }
            try $0.addHandler(self.makeHandler(role: .initiator(dialled: peer), cookie: cookie, established: promise, logLevel: logLevel))
        }
        if let channel { track(channel) }
        return try await promise.futureResult.get()
    }

    func makeHandler(
        role: ErlangHandshake.Role, cookie: Secret?, established: EventLoopPromise<ErlangConnection>?, logLevel: Logger.Level? = nil
    ) -> ErlangLinkHandler {
        let identity = ErlangIdentity(name: nodeName, cookie: self.cookie, creation: creation, flags: flags)
        let handshake = ErlangHandshake(role: role, local: identity, cookie: cookie, stepTimeout: settings.handshakeTimeout.timeAmount, tls: tls != nil)
        var logger = self.logger
        if let logLevel { logger.logLevel = logLevel }
        return ErlangLinkHandler(stack: self, handshake: handshake, established: established, logger: logger)
    }

    func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        runtime.withLock { $0.channels[id] = channel }
        channel.closeFuture.whenComplete { _ in _ = self.runtime.withLock { $0.channels.removeValue(forKey: id) } }
    }

    /// Unregisters, stops the embedded epmd if this node runs it, and closes everything.
    public func shutdown() async {
        let (registration, server, acceptor) = runtime.withLock { runtime in
            runtime.stopping = true
            return (runtime.registration, runtime.server, runtime.acceptor)
        }
        await acceptor?.stop()
        let channels = runtime.withLock { Array($0.channels.values) }
        await registration?.close()
        await server?.shutdown()
        for channel in channels { try? await channel.close() }
        node.withLock { $0 = nil }
    }
}
