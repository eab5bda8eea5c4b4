import JunctionCore
import JunctionTransport
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// The native network stack of one node: its acceptors and its dialler. A connection is
/// a pool of links: the dialler opens the extra ones after the handshake and rejoins
/// lost ones with backoff; the acceptor checks each join. Connections are handed to the
/// delegate (the node), which owns routing and delivery.
public final class NativeStack: Sendable {
    public let name: String
    public let settings: StackSettings
    let local: HandshakeIdentity
    let group: any EventLoopGroup
    let logger: Logger
    /// The node, until the stack shuts down: a late callback after that (a rejoin that
    /// gives up, a link closing) has no one to tell. Held strongly and let go at shutdown
    /// rather than held weakly: a weak reference gives the node a side table, and every
    /// retain and release of it then takes the runtime's slow path (15% of a sending
    /// thread's time with 1 KiB messages).
    let node: Mutex<(any NativeStackDelegate)?>
    var delegate: (any NativeStackDelegate)? { node.withLock { $0 } }
    let channels = Mutex<[ObjectIdentifier: any Channel]>([:])
    let acceptors = Mutex<[Acceptor]>([])
    /// Contexts for `settings.tls`; nil: plain TCP.
    let tls: CertificateManager?
    /// Accepted connections that extra links may join, by connection id.
    let joinableConnections = Mutex<[UInt64: NativeConnection]>([:])
    /// Rejoin attempts before a dialled connection counts as lost.
    static let rejoinAttempts = 8

    /// Throws when `settings.tls` names files that do not load.
    public init(settings: StackSettings, local: HandshakeIdentity, group: any EventLoopGroup, delegate: any NativeStackDelegate, logger: Logger) throws {
        self.tls = try settings.tls.map { try CertificateManager(settings: $0, logger: logger) }
        self.name = settings.name
        self.settings = settings
        self.local = local
        self.group = group
        self.node = Mutex(delegate)
        var logger = logger
        logger[metadataKey: "junction.stack"] = "\(settings.name)"
        self.logger = logger
    }

    /// Binds every acceptor (each kept listening: see `Acceptor`); returns the bound
    /// addresses (real ports for port 0). They accept once `openAcceptors()` is called.
    public func startAcceptors() async throws -> [SocketAddress] {
        var bound: [SocketAddress] = []
        let events = Acceptor.Events(
            failed: { self.delegate?.networkFailed(stack: self.name, reason: $0) }, restored: { self.delegate?.networkRestored(stack: self.name, address: $0) })
        for settings in settings.acceptors {
            var announced = local
            announced.poolSize = settings.poolSize
            let identity = announced
            let acceptor = Acceptor(group: group, host: settings.host, port: settings.port, events: events, logger: logger) {
                self.delegate?.accepts($0, stack: self) ?? false
            } setUp: { channel in
                let handshake = NativeHandshake(role: .acceptor, local: identity, stepTimeout: self.settings.handshakeTimeout.timeAmount)
                let side = self.tls?.serverSide()
                if let side { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: side.context)) }
                try channel.pipeline.syncOperations.addHandler(
                    self.makeHandler(.handshake(handshake), established: nil, route: nil, logLevel: nil, tlsFingerprint: side?.fingerprint))
                self.track(channel)
            }
            acceptors.withLock { $0.append(acceptor) }
            bound.append(try await acceptor.start())
        }
        return bound
    }

    /// Starts accepting on every acceptor: peers that connected since they were bound
    /// wait in the backlog until then.
    public func openAcceptors() {
        for acceptor in acceptors.withLock({ $0 }) { acceptor.open() }
    }

    /// Dials `route`, runs the handshake as `peer`'s dialler offering `flags` and
    /// `maxMessageSize` (the stack's when nil), then joins the pool's extra links.
    /// `compression` (the stack's when nil) is how this side compresses what it sends;
    /// `logLevel` sets these links' log level.
    public func connect(
        to peer: NodeName, route: ResolvedRoute, cookie: Secret, flags: NativeFlags, compression: CompressionSettings? = nil, maxMessageSize: Int? = nil,
        logLevel: Logger.Level? = nil, certificate: CertificateFiles? = nil
    ) async throws -> NativeConnection {
        guard tls != nil || !route.tls else {
            throw NativeProtocolError("\(peer) listens with TLS (\(route)) but stack \(name) has no tls settings; add stacks[].tls")
        }
        var identity = local
        identity.cookie = cookie
        identity.flags = flags
        if let maxMessageSize { identity.maxMessageSize = maxMessageSize }
        let handshake = NativeHandshake(role: .dialler(dialled: peer), local: identity, stepTimeout: settings.handshakeTimeout.timeAmount)
        let connection = try await open(route, phase: .handshake(handshake), compression: compression, logLevel: logLevel, presenting: certificate)
        await withTaskGroup(of: Void.self) { group in
            for slot in connection.slots.dropFirst() {
                group.addTask {
                    do {
                        _ = try await self.join(connection, slot: slot, logLevel: logLevel)
                    } catch {
                        self.logger.notice("link \(slot.index) to \(peer) did not join: \(error); rejoining")
                        self.linkLost(connection, slot: slot)
                    }
                }
            }
        }
        return connection
    }

    /// Opens a link to `route` that starts in `phase`; returns when it is up.
    /// Over TLS it presents `presenting` (a route's certificate) or the stack's.
    func open(
        _ route: ResolvedRoute, phase: NativeLinkHandler.Phase, compression: CompressionSettings? = nil, logLevel: Logger.Level?, presenting: CertificateFiles?
    ) async throws -> NativeConnection {
        let promise = group.next().makePromise(of: NativeConnection.self)
        let side = try tls?.clientSide(presenting: presenting)
        let channel = await dial(group: group, host: route.host, port: route.port, timeout: settings.handshakeTimeout.timeAmount, failing: promise) {
            if let side { try $0.addHandler(try NIOSSLClientHandler(context: side.context, serverHostname: nil)) }
            try $0.addHandler(
                self.makeHandler(
                    phase, established: promise, route: route, compression: compression, logLevel: logLevel, presenting: presenting,
                    tlsFingerprint: side?.fingerprint))
        }
        if let channel { track(channel) }
        return try await promise.futureResult.get()
    }

    /// Joins `slot` of an established dialled connection over a new link.
    func join(_ connection: NativeConnection, slot: LinkSlot, logLevel: Logger.Level?) async throws -> NativeConnection {
        guard let route = connection.route else { throw NativeProtocolError("only the dialling side joins links") }
        let request = LinkJoin.makeRequest(
            connectionID: connection.negotiated.connectionID, slot: slot.index, counter: slot.nextJoinCounter(), received: slot.received,
            sessionKey: connection.negotiated.sessionKey)
        return try await open(route, phase: .joining(connection, slot, request), logLevel: logLevel, presenting: connection.presenting)
    }

    func makeHandler(
        _ phase: NativeLinkHandler.Phase, established: EventLoopPromise<NativeConnection>?, route: ResolvedRoute?, compression: CompressionSettings? = nil,
        logLevel: Logger.Level?, presenting: CertificateFiles? = nil, tlsFingerprint: [UInt8]?
    ) -> NativeLinkHandler {
        var logger = self.logger
        if let logLevel { logger.logLevel = logLevel }
        return NativeLinkHandler(
            stack: self, phase: phase, compression: compression ?? settings.compression, established: established, route: route, presenting: presenting,
            tlsFingerprint: tlsFingerprint, logger: logger)
    }

    // MARK: - connection lifecycle

    /// A handshake completed: accepted connections become joinable.
    func established(_ connection: NativeConnection) {
        if connection.direction == .incoming {
            joinableConnections.withLock { $0[connection.negotiated.connectionID] = connection }
        }
        delegate?.established(connection)
    }

    func joinable(_ id: UInt64) -> NativeConnection? { joinableConnections.withLock { $0[id] } }

    func forget(_ connection: NativeConnection) {
        joinableConnections.withLock { table in
            if table[connection.negotiated.connectionID] === connection { table[connection.negotiated.connectionID] = nil }
        }
    }

    /// A link of `connection` was lost without a close (`why`, when known): the dialler
    /// rejoins it with backoff; the acceptor waits for that, and ends the connection if it
    /// does not come.
    func linkLost(_ connection: NativeConnection, slot: LinkSlot, why: String? = nil) {
        let lost = why.map { "\($0);" } ?? "link \(slot.index) to \(connection.peer) was lost and"
        if connection.direction == .outgoing {
            Task { await self.rejoin(connection, slot: slot, lost: lost) }
        } else {
            // The dialler's rejoins with backoff take about 4.5 s; two handshake
            // deadlines (10 s by default) leave room for that, and not much more.
            let deadline = settings.handshakeTimeout.timeAmount * 2
            group.next().scheduleTask(in: deadline) {
                if slot.channel == nil, !connection.isClosing {
                    self.end(connection, error: NativeProtocolError("\(lost) the peer did not rejoin it"))
                }
            }
        }
    }

    func rejoin(_ connection: NativeConnection, slot: LinkSlot, lost: String) async {
        var delay = TimeAmount.milliseconds(20)
        for attempt in 1...Self.rejoinAttempts {
            guard !connection.isClosing else { return }
            do {
                _ = try await join(connection, slot: slot, logLevel: nil)
                connection.countRejoin()
                logger.info("link \(slot.index) to \(connection.peer) rejoined (attempt \(attempt))")
                return
            } catch let forgotten as ConnectionForgotten {
                end(connection, error: NativeProtocolError("\(lost) \(forgotten)"))
                return
            } catch where Self.refused(error) {
                // Nothing listens where the peer did: it stopped (a partition would time out).
                let route = connection.route.map { "\($0.host):\($0.port)" } ?? "its address"
                end(connection, error: NativeProtocolError("\(lost) nothing listens at \(route) any more (the peer stopped or restarted)"))
                return
            } catch {
                logger.debug("rejoining link \(slot.index) to \(connection.peer) failed: \(error)")
            }
            try? await Task.sleep(for: .nanoseconds(delay.nanoseconds))
            delay = min(delay * 2, .seconds(2))
        }
        end(connection, error: NativeProtocolError("\(lost) \(Self.rejoinAttempts) rejoins failed"))
    }

    /// The connection attempt was actively refused (ECONNREFUSED).
    static func refused(_ error: any Error) -> Bool {
        if let error = error as? IOError { return error.errnoCode == ECONNREFUSED }
        if let error = error as? NIOConnectionError { return !error.connectionErrors.isEmpty && error.connectionErrors.allSatisfy { refused($0.error) } }
        return false
    }

    /// Ends a connection whose link could not be restored. Messages the peer did not
    /// acknowledge are not sent again on a later connection (the peer may have them: a
    /// message is never delivered twice); the error says how many there were.
    func end(_ connection: NativeConnection, error: any Error) {
        // Closed first: what the slots then count is exactly what the close dropped.
        connection.abort()
        let unacknowledged = connection.slots.reduce(0) { $0 + $1.outbox.stats.unacknowledgedMessages }
        let error =
            unacknowledged == 0
            ? error : NativeProtocolError("\(error); \(unacknowledged) messages queued or sent on it were not acknowledged by the peer and may not have arrived")
        forget(connection)
        if connection.markEnded() { delegate?.closed(connection, error: error) }
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
        for acceptor in acceptors.withLock({ $0 }) { await acceptor.stop() }
        let open = channels.withLock { Array($0.values) }
        for channel in open {
            try? await channel.close()
        }
        node.withLock { $0 = nil }
    }
}
