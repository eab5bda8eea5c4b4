import CoreMetrics
import JunctionCore
import JunctionErlang
import JunctionNative
import JunctionTerm
import JunctionTransport
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A Junction node: its stacks, processes, routing table and connections. Outgoing
/// connections are chosen as DESIGN.md "How an outgoing connection is chosen" says.
public final class Node: Sendable {
    public let name: NodeName
    /// Distinguishes this incarnation of the node in the pids and references it mints:
    /// the creation epmd gave its first Erlang stack, or a random one.
    public var creation: UInt32 { runtime.withLock { $0.creation } }
    public let config: JunctionConfig
    /// The static routing table; routes can be added and removed while running.
    public let routes: RouteTable
    /// True for a node that neither listens nor registers (e.g. `junction send`).
    public let hidden: Bool
    let cookie: Secret
    let group: any EventLoopGroup
    let logger: Logger
    let processes = ProcessRegistry()
    let connections: ConnectionTable
    let watchers = Watchers()
    let monitors = OutgoingMonitors()
    let bridges: Bridges
    /// Nil unless a configured route maps atoms.
    let atomMappings: AtomMappings?
    let referenceCounter = Atomic<UInt32>(0)
    let status = NetworkStatusPort()
    let stalls: StallWatch
    let access: Mutex<AccessRules>
    /// Peers closed by `disconnectSystem`: not reconnected, in either direction, until
    /// `connectSystem`.
    let disconnected = Mutex<Set<Atom>>([])
    let limitState = Mutex(LimitState())
    let runtime: Mutex<Runtime>
    let metrics: NodeMetrics

    struct Runtime: Sendable {
        var creation: UInt32
        var stacks: [String: NativeStack] = [:]
        var erlangStacks: [String: ErlangStack] = [:]
        var registrars: [String: any NativeRegistrar] = [:]
        /// Tasks that relay registrars' events to the status port.
        var relays: [Task<Void, Never>] = []
        var listening: [String: [SocketAddress]] = [:]
        var dials: [Atom: Task<Void, Never>] = [:]
        /// Attempts of the redial under way, per peer (the status table's retries).
        var redialAttempts: [Atom: Int] = [:]
    }

    init(
        config: JunctionConfig, name: NodeName, cookie: Secret, routes: RouteTable, hidden: Bool, group: any EventLoopGroup, metrics: any MetricsFactory,
        logger: Logger
    ) {
        self.name = name
        self.metrics = NodeMetrics(factory: metrics)
        self.runtime = Mutex(Runtime(creation: UInt32.random(in: 1...UInt32.max)))
        self.config = config
        self.routes = routes
        self.hidden = hidden
        self.cookie = cookie
        self.group = group
        var logger = logger
        logger[metadataKey: "junction.node"] = "\(name)"
        self.logger = logger
        self.connections = ConnectionTable(limits: config.limits)
        self.stalls = StallWatch(period: config.limits.stalledAfter.timeAmount)
        self.access = Mutex(config.access)
        self.bridges = Bridges(capacity: config.limits.bridgeProxies)
        self.atomMappings = AtomMappings(config: config, routes: routes)
    }

    /// Starts a node: reads the cookie, builds the routing table, starts every stack's
    /// acceptors and registers with each stack's registrar (unless `hidden`). Metrics go
    /// to `metrics` (the process-wide swift-metrics factory by default).
    public static func start(
        config: JunctionConfig, name: NodeName? = nil, hidden: Bool = false, environment: [String: String],
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, metrics: any MetricsFactory = MetricsSystem.factory, logger: Logger
    ) async throws -> Node {
        try await start(config: config, name: name, hidden: hidden, environment: environment, group: group, metrics: metrics, logger: logger) { _ in }.node
    }

    /// Starts a node as above, with the processes `services` spawns (returned with it).
    /// `services` runs once the stacks are bound and registered (so pids carry the
    /// creation epmd gave), before they accept: peers that connect meanwhile wait in the
    /// backlog. A message to a service or a configured bridge is never dropped because a
    /// peer reached the node first (one that redials a lost connection sends what it
    /// retained at once).
    public static func start<Services>(
        config: JunctionConfig, name: NodeName? = nil, hidden: Bool = false, environment: [String: String],
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, metrics: any MetricsFactory = MetricsSystem.factory, logger: Logger,
        services: (Node) async throws -> Services
    ) async throws -> (node: Node, services: Services) {
        let cookie = try config.node.cookie.read(environment: environment, createIfMissing: true)
        let node = Node(
            config: config, name: name ?? config.node.name, cookie: cookie, routes: try config.routeTable(environment: environment),
            hidden: hidden, group: group, metrics: metrics, logger: logger)
        do {
            try await node.startStacks()
            for bridge in config.bridges { try node.bridge(bridge.name, to: bridge.process, on: bridge.node) }
            let spawned = try await services(node)
            node.openStacks()
            return (node, spawned)
        } catch {
            await node.shutdown()
            throw error
        }
    }

    func startStacks() async throws {
        for settings in config.stacks {
            if settings.kind == .erlang {
                try await startErlangStack(settings)
                continue
            }
            let identity = HandshakeIdentity(
                name: name, cookie: cookie, flags: settings.compression.enabled ? [.compression] : [], maxMessageSize: settings.maxMessageSize)
            let stack = try NativeStack(settings: settings, local: identity, group: group, delegate: self, logger: logger)
            let registrar = try await makeRegistrar(settings)
            runtime.withLock {
                $0.stacks[settings.name] = stack
                $0.registrars[settings.name] = registrar
            }
            guard !hidden else { continue }
            let addresses = try await stack.startAcceptors()
            runtime.withLock { $0.listening[settings.name] = addresses }
            guard let address = addresses.first, let port = address.port else { continue }
            // An acceptor on a wildcard address is reached by the node name's host.
            let host = address.ipAddress.flatMap { $0 == "0.0.0.0" || $0 == "::" ? nil : $0 } ?? name.host
            try await registrar.register(
                name: name, host: host, port: port, tls: settings.tls != nil, handshakeVersion: Int(NativeHandshake.supportedVersions.upperBound), protocolVersion: 1)
            let listeningOn = addresses.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" }.joined(separator: ", ")
            logger.info(
                "stack \(settings.name) (\(settings.kind.rawValue)) listens on \(listeningOn); registered as '\(name.alive)' with \(registrar.summary(for: nil))")
        }
    }

    /// Every stack starts accepting.
    func openStacks() {
        let (stacks, erlangStacks) = runtime.withLock { ($0.stacks.values, $0.erlangStacks.values) }
        for stack in stacks { stack.openAcceptors() }
        for stack in erlangStacks { stack.openAcceptor() }
    }

    /// The stack's registrar: the embedded one of this host, or an etcd cluster whose
    /// joins and leaves go to the status port.
    func makeRegistrar(_ settings: StackSettings) async throws -> any NativeRegistrar {
        guard settings.registrar.kind == .etcd, let etcd = settings.registrar.etcd else {
            return EmbeddedRegistrar(stack: settings.name, settings: settings.registrar, group: group, logger: logger)
        }
        let registrar = try EtcdRegistrar(stack: settings.name, settings: etcd, group: group, logger: logger)
        let stack = settings.name
        let relay = Task { [weak self] in
            for await event in registrar.events {
                switch event {
                case .joined(let node): self?.status.publish(.nodeJoined(stack: stack, node: node))
                case .left(let node): self?.status.publish(.nodeLeft(stack: stack, node: node))
                case .stale(let reason):
                    self?.metrics.gauge("junction_registrar_stale", [("stack", stack)]).record(1)
                    self?.status.publish(.registrarStale(stack: stack, reason: reason))
                case .fresh:
                    self?.metrics.gauge("junction_registrar_stale", [("stack", stack)]).record(0)
                    self?.status.publish(.registrarFresh(stack: stack))
                }
            }
        }
        runtime.withLock { $0.relays.append(relay) }
        await registrar.start()
        return registrar
    }

    func startErlangStack(_ settings: StackSettings) async throws {
        let stack = try ErlangStack(settings: settings, name: name, cookie: cookie, creation: creation, group: group, delegate: self, logger: logger)
        let first = runtime.withLock { runtime in
            defer { runtime.erlangStacks[settings.name] = stack }
            return runtime.erlangStacks.isEmpty
        }
        if first { try startNetKernel() }
        guard !hidden else { return }
        let address = try await stack.start()
        runtime.withLock { runtime in
            runtime.listening[settings.name] = [address]
            if first { runtime.creation = stack.creation }
        }
        logger.info(
            "stack \(settings.name) (erlang) listens on \(address.ipAddress ?? "?"):\(address.port ?? 0); registered as '\(name.alive)' with epmd at \(settings.erlang.epmdHost):\(settings.erlang.epmdPort)\(stack.runsEpmd ? " (run by this node)" : ""), creation \(stack.creation)")
    }

    /// The addresses each stack listens on.
    public var listening: [String: [SocketAddress]] { runtime.withLock { $0.listening } }

    /// An executor on one of the node's event loops: a process task that prefers it
    /// (`Task(executorPreference:)`) answers with the least latency when the node runs
    /// on a one-thread group, as `junction run` does.
    public var executor: EventLoopExecutor { EventLoopExecutor(group.next()) }

    /// The live connection to `peer`, if any.
    public func connection(to peer: NodeName) -> NativeConnection? { connections.connection(peer.atom) as? NativeConnection }

    /// The live Erlang distribution connection to `peer`, if any.
    public func erlangConnection(to peer: NodeName) -> ErlangConnection? { connections.connection(peer.atom) as? ErlangConnection }

    /// An Erlang stack by name.
    public func erlangStack(_ name: String) -> ErlangStack? { runtime.withLock { $0.erlangStacks[name] } }

    /// The registrar of a stack (for its events and resolver).
    public func registrar(stack: String) -> EmbeddedRegistrar? { runtime.withLock { $0.registrars[stack] } as? EmbeddedRegistrar }

    /// The etcd registrar of the native stack `stack`, if it has one.
    public func etcdRegistrar(stack: String) -> EtcdRegistrar? { runtime.withLock { $0.registrars[stack] } as? EtcdRegistrar }

    /// Where stack `stack` registers and resolves (for status output).
    public func registrarSummary(stack: String) -> String? { runtime.withLock { $0.registrars[stack] }?.summary(for: nil) }

    // MARK: - processes

    /// Creates a process, registered under `name` when given.
    public func spawn(name: String? = nil) throws -> ProcessHandle {
        try processes.spawn(name: name) { id in
            ProcessHandle(pid: Pid(node: self.name.atom, id: id, serial: 0, creation: creation), name: name, node: self)
        }
    }

    /// A reference unique to this incarnation of the node (call tags, bridge stand-ins).
    public func makeReference() -> Reference {
        let count = referenceCounter.add(1, ordering: .relaxed).newValue
        return Reference(node: name.atom, creation: creation, ids: [count, UInt32.random(in: 0...UInt32.max), UInt32.random(in: 0...UInt32.max)])
    }

    /// `gen_server:call` from a short-lived process of this node: sends
    /// `{'$gen_call', {Pid, Ref}, Request}` to `destination` and returns the `Reply` of the
    /// `{Ref, Reply}` that comes back, or throws `ReceiveTimeout`.
    public func call(_ request: Term, to destination: Destination, timeout: Duration = .seconds(5)) async throws -> Term {
        let caller = try spawn()
        defer { caller.exit() }
        let tag = makeReference()
        try await caller.send(.tuple([.atom("$gen_call"), .tuple([.pid(caller.pid), .ref(tag)]), request]), to: destination)
        let deadline = ContinuousClock.now + timeout
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw ReceiveTimeout(timeout: timeout) }
            let reply = try await caller.receive(timeout: left).term()
            if case .tuple(let fields) = reply, fields.count == 2, fields[0] == .ref(tag) { return fields[1] }
        }
    }

    // MARK: - sending

    /// Sends `payload` to `destination`. Returns once the message is queued on its link
    /// (dialling first when needed), and while that connection holds its senders back
    /// (a peer that reads slower than this node sends), once it takes more; throws when
    /// no route connects.
    nonisolated(nonsending) public func send(_ payload: Payload, to destination: Destination, from sender: Pid? = nil) async throws {
        try await send(payload, to: destination, from: sender, sendingProcess: nil)
    }

    /// `send` from `sendingProcess`, which keeps the connection it last used (`route`):
    /// while the connection table has not changed since, its sends to the same node skip
    /// the table (its lock, shared by every sender, and a hash of the node's name).
    nonisolated(nonsending) func send(_ payload: Payload, to destination: Destination, from sender: Pid?, sendingProcess: ProcessHandle?) async throws {
        let peer: Atom
        switch destination {
        case .name(let process, let node):
            if node == name {
                processes.byName(process)?.mailbox.deliver(payload)
                return
            }
            peer = node.atom
        case .pid(let pid):
            if pid.node == name.atom {
                if pid.creation == creation { processes.byId(pid.id)?.mailbox.deliver(payload) }
                return
            }
            peer = pid.node
        case .alias(let alias):
            // This node mints no aliases: a local one names no process.
            guard alias.node != name.atom else { return }
            peer = alias.node
        }
        var (payload, destination) = (payload, destination)
        if let mapping = atomMappings?.mapping(for: peer) { (payload, destination) = try mapping.toPeer(payload, destination) }
        let sender = sender ?? systemPid
        let streamKey = Self.streamKey(from: sender, to: destination)
        // A connection that ends between the lookup and the write refuses the message
        // (OutboxClosed) before its end is announced: wait for the announcement, then look
        // again, so the message is retained (or goes on the next connection) instead of
        // failing. Each round needs a connection that ended: a few rounds are plenty.
        for _ in 0..<4 {
            let routing: ConnectionTable.Routing
            let generation = connections.generation.load(ordering: .acquiring)
            if let connection = sendingProcess?.route.withLock({ $0?.connection(to: peer, generation: generation) }) {
                routing = .connection(connection)
            } else {
                do {
                    // Built only when it must wait for a dial (an autoclosure).
                    routing = try connections.route(
                        peer, message: PendingMessage(destination: destination, sender: sender, streamKey: streamKey, payload: payload, size: payload.estimatedSize))
                } catch {
                    metrics.dropped(1, reason: "pending_queue_full")
                    throw error
                }
                // Read before the look-up: a table that changes meanwhile leaves the cached
                // route at an older generation, which the next send does not trust.
                if case .connection(let connection) = routing { sendingProcess?.route.withLock { $0 = CachedRoute(peer: peer, connection: connection, generation: generation) } }
            }
            switch routing {
            case .connection(let connection):
                let backedUp: Bool
                do {
                    backedUp = try connection.send(payload, to: destination, from: sender, streamKey: streamKey)
                } catch is OutboxClosed {
                    await connections.waitUntilGone(connection)
                    continue
                }
                // Queued: from here on its fate is the connection's (a close while waiting
                // leaves it among the frames the loss reports).
                if backedUp { await waitWhileBackedUp(connection, streamKey: streamKey) }
                return
            case .queued(let outcome, let startDial):
                if startDial { startDialling(peer) }
                try await outcome.wait()
                return
            case .retained:
                return
            }
        }
        throw OutboxClosed(peer: peer.name)
    }

    /// The sender of messages sent on the node's behalf rather than a process's.
    var systemPid: Pid { Pid(node: name.atom, id: 0, serial: 0, creation: creation) }

    /// The stream key of a (sender, receiver) pair: the same pair always maps to the
    /// same key, so a link pool keeps their frames on one slot, in order.
    static func streamKey(from sender: Pid?, to destination: Destination) -> UInt32 {
        var hasher = FNV1a()
        hasher.add(sender?.id ?? 0)
        switch destination {
        case .name(let process, _): hasher.add(process)
        case .pid(let pid): hasher.add(pid.id)
        case .alias(let alias): for word in alias.ids { hasher.add(word) }
        }
        return hasher.value
    }

    func startDialling(_ peer: Atom) {
        let task = Task {
            await self.dial(peer)
            _ = self.runtime.withLock { $0.dials.removeValue(forKey: peer) }
        }
        runtime.withLock { $0.dials[peer] = task }
    }

    func dial(_ peer: Atom) async {
        do {
            let target = try NodeName(peer.name)
            // The stack's `established` installs the connection (and flushes the queue);
            // installing it again here could bring back one that died meanwhile.
            _ = try await connect(target)
        } catch let error where Self.lostTieBreak(error) {
            // The peer's own dial won the tie-break; its connection arrives as incoming.
            await awaitIncoming(peer)
        } catch {
            logger.notice("cannot connect to \(peer): \(error)")
            connections.failDial(peer, error: error)
        }
    }

    /// The dial met the peer's own concurrent dial (either side may have refused).
    static func isSimultaneous(_ error: any Error) -> Bool {
        if let error = error as? HandshakeError { return error.reason == .simultaneous }
        if let error = error as? ErlangHandshakeError { return error.reason == .simultaneous }
        return false
    }

    /// The peer refused this dial because its own concurrent dial wins.
    static func lostTieBreak(_ error: any Error) -> Bool {
        if let error = error as? HandshakeError { return error.reason == .simultaneous && error.fromPeer }
        if let error = error as? ErlangHandshakeError { return error.reason == .simultaneous }
        return false
    }

    /// After losing a simultaneous-connect tie-break: wait one handshake deadline for the
    /// peer's connection, then give up.
    func awaitIncoming(_ peer: Atom) async {
        let deadline = config.defaultStack.handshakeTimeout.timeAmount
        let arrived = await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await self.connections.dialOutcome(peer)?.wait()) != nil }
            group.addTask {
                try? await Task.sleep(for: .nanoseconds(deadline.nanoseconds))
                return false
            }
            defer { group.cancelAll() }
            return await group.next() ?? false
        }
        if !arrived {
            connections.failDial(peer, error: DialError(peer: peer.name, attempts: ["simultaneous connect: the peer won the tie-break but its connection never arrived"]))
        }
    }

    /// Tries the candidate routes for `peer` in order until one connects.
    func connect(_ peer: NodeName) async throws -> any PeerConnection {
        // A blocked or disconnected peer has no live connection (blocking and
        // disconnecting close it), so the sends that reach here are the ones to refuse.
        try checkDialAllowed(peer.atom)
        let matches = routes.route(for: peer.description)
        (matches.isEmpty ? metrics.defaultRouteLookups : metrics.routeLookups).increment()
        var attempts: [String] = []
        for entry in matches {
            let label = "route '\(entry.match)' (weight \(entry.weight))"
            do {
                return try await connect(peer, via: entry.route)
            } catch let error where Self.isSimultaneous(error) {
                throw error
            } catch {
                attempts.append("\(label): \(error)")
            }
        }
        if matches.isEmpty || config.node.fallbackToDefaultResolver {
            let stack = config.defaultStack.name
            do {
                return try await connect(peer, via: NetworkRoute(resolver: stack))
            } catch let error where Self.isSimultaneous(error) {
                throw error
            } catch {
                attempts.append("default resolver (stack \(stack)): \(error)")
            }
        }
        throw DialError(peer: peer.description, attempts: attempts)
    }

    /// Resolves (or takes the explicit address of) one network route and dials it.
    func connect(_ peer: NodeName, via route: NetworkRoute) async throws -> any PeerConnection {
        let resolved = try await resolve(peer, via: route)
        try checkDialable(peer, host: resolved.host, port: resolved.port)
        guard belowHardLimit(counted: 1) else { throw ConnectionLimitReached(limit: config.limits.hardConnections) }
        if let erlang = erlangStack(resolved.stack) {
            return try await erlang.connect(to: peer, route: resolved, cookie: route.cookie ?? cookie, logLevel: route.logLevel, certificate: route.certificate)
        }
        guard let stack = runtime.withLock({ $0.stacks[resolved.stack] }) else { throw RouteUnusable("no stack named '\(resolved.stack)'") }
        let compression = route.compression ?? stack.settings.compression
        var flags = NativeFlags()
        if route.flags.compression ?? compression.enabled { flags.insert(.compression) }
        return try await stack.connect(
            to: peer, route: resolved, cookie: route.cookie ?? cookie, flags: flags, compression: compression, maxMessageSize: route.flags.maxMessageSize,
            logLevel: route.logLevel, certificate: route.certificate)
    }

    /// Where `peer` is by one route: what its resolver answers, with the route's explicit
    /// fields taking precedence, or the route's explicit address.
    func resolve(_ peer: NodeName, via route: NetworkRoute) async throws -> ResolvedRoute {
        let resolved: ResolvedRoute
        if let resolverName = route.resolver {
            let clock = ContinuousClock()
            let start = clock.now
            do {
                if let erlang = erlangStack(resolverName) {
                    resolved = try await erlang.resolve(peer).merged(with: route.explicit)
                } else {
                    guard let registrar = runtime.withLock({ $0.registrars[resolverName] }) else { throw RouteUnusable("no stack named '\(resolverName)'") }
                    resolved = try await registrar.resolve(peer).merged(with: route.explicit)
                }
                metrics.resolved(stack: resolverName, seconds: (clock.now - start).seconds, failed: false)
            } catch {
                metrics.resolved(stack: resolverName, seconds: (clock.now - start).seconds, failed: true)
                throw error
            }
        } else if let explicit = route.explicit, let host = explicit.host, let port = explicit.port {
            resolved = ResolvedRoute(
                stack: explicit.stack ?? config.defaultStack.name, host: host, port: port, tls: explicit.tls ?? false,
                handshakeVersion: explicit.handshakeVersion ?? 1, protocolVersion: explicit.protocolVersion ?? 1)
        } else {
            throw RouteUnusable("the route names neither a resolver nor a host and port")
        }
        return resolved
    }

    /// `junction routes NODE --resolve`: for each route that would be tried for `peer`, in
    /// order, which resolver was asked and what it answered (or why it failed).
    public func resolveCandidates(for peer: NodeName) async -> [String] {
        var candidates = routes.route(for: peer.description).map { ("'\($0.match)'", $0.route) }
        if candidates.isEmpty || config.node.fallbackToDefaultResolver {
            candidates.append(("default resolver", NetworkRoute(resolver: config.defaultStack.name)))
        }
        var lines: [String] = []
        for (index, (label, route)) in candidates.enumerated() {
            let source = route.resolver.map { resolverDescription($0, for: peer) } ?? "explicit route"
            do {
                let answer = try await resolve(peer, via: route)
                lines.append(
                    "\(index + 1). \(label): \(source) answered \(answer.host):\(answer.port), stack \(answer.stack), handshake v\(answer.handshakeVersion), protocol v\(answer.protocolVersion)\(answer.tls ? ", tls" : "")"
                )
            } catch {
                lines.append("\(index + 1). \(label): \(source) failed: \(error)")
            }
        }
        return lines
    }

    func resolverDescription(_ stack: String, for peer: NodeName) -> String {
        if let erlang = erlangStack(stack) { return "epmd at \(peer.host):\(erlang.erlang.epmdPort) (stack \(stack))" }
        guard let registrar = runtime.withLock({ $0.registrars[stack] }) else { return "resolver \(stack)" }
        return registrar.summary(for: peer)
    }

    func install(_ connection: any PeerConnection) {
        let replaced = connections.install(connection) { connection, message in
            _ = try connection.send(message.payload, to: message.destination, from: message.sender, streamKey: message.streamKey)
        }
        replaced?.close()
    }

    // MARK: - lifecycle

    /// Closes every connection gracefully, unregisters, and stops the stacks. A started
    /// node lives until this returns, whoever else holds it: its stacks hold it while
    /// they can call back.
    public func shutdown() async {
        for process in processes.all() { process.end() }
        await withTaskGroup(of: Void.self) { group in
            for connection in connections.all() { group.addTask { await connection.closeAndWait() } }
        }
        let (stacks, erlangStacks, registrars, dials) = runtime.withLock { ($0.stacks.values, $0.erlangStacks.values, $0.registrars.values, $0.dials.values + $0.relays) }
        for dial in dials { dial.cancel() }
        for registrar in registrars { await registrar.shutdown() }
        for stack in stacks { await stack.shutdown() }
        for stack in erlangStacks { await stack.shutdown() }
    }

    /// The routes `junction routes NODE` prints: static matches in trial order, then the
    /// default resolver when it would be used.
    public func explainRoutes(for peer: NodeName) -> [String] {
        config.explainRoutes(for: peer, table: routes)
    }
}

extension Payload {
    /// Bytes this payload takes when queued (for the pending-queue bound).
    var estimatedSize: Int {
        switch self {
        case .encoded(let buffer): return buffer.readableBytes
        case .term: return 64
        }
    }
}

/// 32-bit FNV-1a, for stream keys.
struct FNV1a {
    var value: UInt32 = 2_166_136_261
    mutating func add(_ byte: UInt8) {
        value = (value ^ UInt32(byte)) &* 16_777_619
    }
    mutating func add(_ word: UInt32) {
        withUnsafeBytes(of: word) { for byte in $0 { add(byte) } }
    }
    mutating func add(_ text: String) {
        for byte in text.utf8 { add(byte) }
    }
}

/// A static route that cannot be used as configured.
public struct RouteUnusable: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
