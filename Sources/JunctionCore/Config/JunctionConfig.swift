import Logging

/// The whole configuration of a Junction node, as decoded from YAML (`Config/README.md`
/// documents every key). Decoding checks types, unknown keys and cross references.
public struct JunctionConfig: Sendable, Decodable {
    public var node: NodeSettings
    public var stacks: [StackSettings]
    public var routes: [RouteSettings]
    public var limits: LimitSettings
    /// Block and allow rules in force at start, in order.
    public var access: AccessRules
    /// Names on this node that forward to processes on other nodes.
    public var bridges: [BridgeSettings]
    /// The admin endpoint; nil (the default) serves none.
    public var admin: AdminSettings?

    enum CodingKeys: String, CodingKey, CaseIterable { case node, stacks, routes, limits, access, bridges, admin }

    public init(
        node: NodeSettings, stacks: [StackSettings], routes: [RouteSettings] = [], limits: LimitSettings = .init(), access: AccessRules = .init(),
        bridges: [BridgeSettings] = [], admin: AdminSettings? = nil
    ) {
        self.node = node
        self.stacks = stacks
        self.routes = routes
        self.limits = limits
        self.access = access
        self.bridges = bridges
        self.admin = admin
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        node = try container.decode(NodeSettings.self, forKey: .node)
        stacks = try container.decode([StackSettings].self, forKey: .stacks)
        routes = try container.value(.routes, default: [])
        limits = try container.value(.limits, default: LimitSettings())
        access = AccessRules()
        for entry in try container.value(.access, default: [AccessEntry]()) { entry.apply(to: &access) }
        bridges = try container.value(.bridges, default: [])
        admin = try container.decodeIfPresent(AdminSettings.self, forKey: .admin)
        try validate(path: decoder.codingPath)
    }

    /// Checks what single keys cannot: unique stack names, references between sections.
    public func validate(path: [CodingKey] = []) throws {
        guard !stacks.isEmpty else { throw invalid(path + [CodingKeys.stacks], "at least one stack is needed") }
        var seen: Set<String> = []
        for (index, stack) in stacks.enumerated() where !seen.insert(stack.name).inserted {
            throw invalid(path + [CodingKeys.stacks, AnyCodingKey(intValue: index)!], "stack name '\(stack.name)' is used twice")
        }
        let defaultStack = node.defaultStack ?? stacks[0].name
        guard seen.contains(defaultStack) else {
            throw invalid(path + [CodingKeys.node, NodeSettings.CodingKeys.defaultStack], "no stack is named '\(defaultStack)'; stacks: \(stacks.map(\.name).joined(separator: ", "))")
        }
        for (index, route) in routes.enumerated() {
            let routePath = path + [CodingKeys.routes, AnyCodingKey(intValue: index)!]
            if let resolver = route.resolver, !seen.contains(resolver) {
                throw invalid(routePath + [RouteSettings.CodingKeys.resolver], "no stack is named '\(resolver)'; stacks: \(stacks.map(\.name).joined(separator: ", "))")
            }
            if let stack = route.route?.stack, !seen.contains(stack) {
                throw invalid(routePath + [RouteSettings.CodingKeys.route], "no stack is named '\(stack)'")
            }
        }
        var bridgeNames: Set<String> = []
        for (index, bridge) in bridges.enumerated() {
            let bridgePath = path + [CodingKeys.bridges, AnyCodingKey(intValue: index)!]
            guard bridgeNames.insert(bridge.name).inserted else { throw invalid(bridgePath + [BridgeSettings.CodingKeys.name], "bridge name '\(bridge.name)' is used twice") }
            guard bridge.node != node.name else {
                throw invalid(bridgePath + [BridgeSettings.CodingKeys.node], "a bridge forwards to another node, not to this one (\(node.name))")
            }
        }
    }

    /// The stack that resolves names no static route matches.
    public var defaultStack: StackSettings {
        let name = node.defaultStack ?? stacks[0].name
        return stacks.first { $0.name == name } ?? stacks[0]
    }

    /// The static routing table this configuration describes, with route cookies read
    /// from their sources.
    public func routeTable(environment: [String: String]) throws -> RouteTable {
        try RouteTable(routes: routes.map { try $0.staticRoute(environment: environment) })
    }
}

/// `node:` — who this node is.
public struct NodeSettings: Sendable, Hashable, Decodable {
    public var name: NodeName
    public var cookie: CookieSource
    /// Stack whose resolver handles names no static route matches; the first stack by default.
    public var defaultStack: String?
    /// Try the default stack's resolver when static routes matched but none connected.
    public var fallbackToDefaultResolver: Bool
    /// Event-loop threads of `junction run`: links are spread over them, so more than one
    /// lets compressed links inflate in parallel.
    public var eventLoopThreads: Int
    /// How long an event loop keeps polling its sockets after a link read or wrote,
    /// instead of sleeping (0 to always sleep): a wake-up from sleep costs tens of
    /// microseconds per message on a virtual machine, polling costs CPU while it lasts.
    public var busyPoll: ConfigDuration

    enum CodingKeys: String, CodingKey, CaseIterable { case name, cookie, defaultStack, fallbackToDefaultResolver, eventLoopThreads, busyPoll }

    public init(
        name: NodeName, cookie: CookieSource, defaultStack: String? = nil, fallbackToDefaultResolver: Bool = false, eventLoopThreads: Int = 1,
        busyPoll: ConfigDuration = .microseconds(100)
    ) {
        self.name = name
        self.cookie = cookie
        self.defaultStack = defaultStack
        self.fallbackToDefaultResolver = fallbackToDefaultResolver
        self.eventLoopThreads = eventLoopThreads
        self.busyPoll = busyPoll
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        let text = try container.decode(String.self, forKey: .name)
        do { name = try NodeName(text) } catch { throw invalid(decoder.codingPath + [CodingKeys.name], error.description) }
        cookie = try container.decode(CookieSource.self, forKey: .cookie)
        defaultStack = try container.decodeIfPresent(String.self, forKey: .defaultStack)
        fallbackToDefaultResolver = try container.value(.fallbackToDefaultResolver, default: false)
        eventLoopThreads = try container.value(.eventLoopThreads, default: 1)
        guard (1...64).contains(eventLoopThreads) else {
            throw invalid(decoder.codingPath + [CodingKeys.eventLoopThreads], "must be 1...64 threads, not \(eventLoopThreads)")
        }
        busyPoll = try container.value(.busyPoll, default: .microseconds(100))
        guard busyPoll.nanoseconds <= 10_000_000 else {
            throw invalid(
                decoder.codingPath + [CodingKeys.busyPoll],
                "must be at most 10ms, not \(busyPoll): a loop polls (one core busy) for that long after every message; 0 turns polling off")
        }
    }
}

/// Where a cookie comes from: an environment variable, a file, or both (the variable
/// wins when set). Cookies never appear in config files themselves, nor in logs.
public struct CookieSource: Sendable, Hashable, Decodable {
    public var env: String?
    public var file: String?

    enum CodingKeys: String, CodingKey, CaseIterable { case env, file }

    public init(env: String? = nil, file: String? = nil) {
        self.env = env
        self.file = file
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        env = try container.decodeIfPresent(String.self, forKey: .env)
        file = try container.decodeIfPresent(String.self, forKey: .file)
        guard env != nil || file != nil else { throw invalid(decoder.codingPath, "a secret needs 'env' (a variable name) or 'file' (a path), or both") }
    }
}

/// `stacks[]` — one network stack: its kind, acceptors and registrar.
public struct StackSettings: Sendable, Hashable, Decodable {
    public enum Kind: String, Sendable, Decodable, CaseIterable { case native, erlang }

    public var name: String
    public var kind: Kind
    public var acceptors: [AcceptorSettings]
    public var registrar: RegistrarSettings
    /// Deadline for each handshake step.
    public var handshakeTimeout: ConfigDuration
    /// Largest message accepted or sent on this stack, in bytes.
    public var maxMessageSize: Int
    /// How this stack compresses what it sends.
    public var compression: CompressionSettings
    /// A frame queued sooner than this after a link's last write waits until this long
    /// after it, so a steady stream shares writes; zero writes every frame at once.
    public var writeCoalescing: ConfigDuration
    /// (native) A link that receives nothing, not even a heartbeat, for this long is lost
    /// (the dialler rejoins it); an idle link sends a heartbeat every quarter of it. An
    /// `erlang` stack uses `erlang.netTickTime` instead.
    public var silenceTimeout: ConfigDuration
    /// TLS for every connection of this stack (for an `erlang` stack: OTP's TLS
    /// distribution, `-proto_dist inet_tls`); nil: plain TCP.
    public var tls: TLSSettings?
    /// Settings of an `erlang` stack.
    public var erlang: ErlangSettings

    enum CodingKeys: String, CodingKey, CaseIterable { case name, kind, acceptors, registrar, handshakeTimeout, maxMessageSize, compression, writeCoalescing, silenceTimeout, tls, erlang }

    public init(
        name: String, kind: Kind = .native, acceptors: [AcceptorSettings] = [.init()], registrar: RegistrarSettings = .init(),
        handshakeTimeout: ConfigDuration = .seconds(5), maxMessageSize: Int = 64 << 20, compression: CompressionSettings = .init(),
        writeCoalescing: ConfigDuration = .microseconds(50), silenceTimeout: ConfigDuration = .seconds(60), tls: TLSSettings? = nil,
        erlang: ErlangSettings = .init()
    ) {
        self.name = name
        self.kind = kind
        self.acceptors = acceptors
        self.registrar = registrar
        self.handshakeTimeout = handshakeTimeout
        self.maxMessageSize = maxMessageSize
        self.compression = compression
        self.writeCoalescing = writeCoalescing
        self.silenceTimeout = silenceTimeout
        self.tls = tls
        self.erlang = erlang
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        let kindText = try container.decode(String.self, forKey: .kind)
        guard let kind = Kind(rawValue: kindText) else {
            throw invalid(decoder.codingPath + [CodingKeys.kind], "unknown stack kind '\(kindText)'; available: \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.kind = kind
        acceptors = try container.value(.acceptors, default: [AcceptorSettings()])
        registrar = try container.value(.registrar, default: RegistrarSettings())
        handshakeTimeout = try container.value(.handshakeTimeout, default: .seconds(5))
        maxMessageSize = try container.value(.maxMessageSize, default: 64 << 20)
        compression = try container.value(.compression, default: CompressionSettings())
        writeCoalescing = try container.value(.writeCoalescing, default: .microseconds(50))
        silenceTimeout = try container.value(.silenceTimeout, default: .seconds(60))
        tls = try container.decodeIfPresent(TLSSettings.self, forKey: .tls)
        erlang = try container.value(.erlang, default: ErlangSettings())

        if kind != .erlang, container.contains(.erlang) {
            throw invalid(decoder.codingPath + [CodingKeys.erlang], "only a stack of kind 'erlang' takes Erlang settings")
        }
        if kind == .erlang, container.contains(.silenceTimeout) {
            throw invalid(decoder.codingPath + [CodingKeys.silenceTimeout], "an 'erlang' stack detects silent peers with erlang.netTickTime; set that instead")
        }
        guard silenceTimeout.nanoseconds >= 1_000_000_000 else {
            throw invalid(decoder.codingPath + [CodingKeys.silenceTimeout], "must be at least 1s, not \(silenceTimeout): heartbeats go every quarter of it")
        }
        guard writeCoalescing.nanoseconds <= 10_000_000 else {
            throw invalid(decoder.codingPath + [CodingKeys.writeCoalescing], "must be at most 10ms, not \(writeCoalescing): it delays frames under load by up to that much")
        }
        guard (1024...(1 << 30)).contains(maxMessageSize) else {
            throw invalid(decoder.codingPath + [CodingKeys.maxMessageSize], "must be between 1024 and 1073741824 bytes, not \(maxMessageSize)")
        }
    }
}

/// `stacks[].erlang` — how an `erlang` stack meets epmd and keeps connections alive.
public struct ErlangSettings: Sendable, Hashable, Decodable {
    /// Where this host's epmd listens (the node registers there).
    public var epmdHost: String
    /// epmd's port on every host (resolving `name@host` asks `host:epmdPort`).
    public var epmdPort: Int
    /// Start an embedded epmd when nothing listens on the epmd port.
    public var embeddedEpmd: Bool
    /// A peer silent this long is lost; a tick goes out after a quarter of it without
    /// writes (OTP's `net_ticktime`).
    public var netTickTime: ConfigDuration
    /// A hidden node: Erlang peers list it in `nodes(hidden)` only.
    public var hidden: Bool

    enum CodingKeys: String, CodingKey, CaseIterable { case epmdHost, epmdPort, embeddedEpmd, netTickTime, hidden }

    public init(epmdHost: String = "127.0.0.1", epmdPort: Int = 4369, embeddedEpmd: Bool = true, netTickTime: ConfigDuration = .seconds(60), hidden: Bool = false) {
        self.epmdHost = epmdHost
        self.epmdPort = epmdPort
        self.embeddedEpmd = embeddedEpmd
        self.netTickTime = netTickTime
        self.hidden = hidden
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        epmdHost = try container.value(.epmdHost, default: "127.0.0.1")
        epmdPort = try container.value(.epmdPort, default: 4369)
        embeddedEpmd = try container.value(.embeddedEpmd, default: true)
        netTickTime = try container.value(.netTickTime, default: .seconds(60))
        hidden = try container.value(.hidden, default: false)
        try checkPort(epmdPort, decoder.codingPath + [CodingKeys.epmdPort])
        guard netTickTime.nanoseconds >= 1_000_000_000 else {
            throw invalid(decoder.codingPath + [CodingKeys.netTickTime], "must be at least 1s, not \(netTickTime)")
        }
    }
}

/// `stacks[].acceptors[]` — an address this stack listens on.
public struct AcceptorSettings: Sendable, Hashable, Decodable {
    public var host: String
    /// 0 lets the kernel pick a free port (the registrar publishes the real one).
    public var port: Int
    /// Links per connection this acceptor announces (1...16).
    public var poolSize: Int

    enum CodingKeys: String, CodingKey, CaseIterable { case host, port, poolSize }

    public init(host: String = "127.0.0.1", port: Int = 0, poolSize: Int = 3) {
        self.host = host
        self.port = port
        self.poolSize = poolSize
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        host = try container.value(.host, default: "127.0.0.1")
        port = try container.value(.port, default: 0)
        poolSize = try container.value(.poolSize, default: 3)
        try checkPort(port, decoder.codingPath + [CodingKeys.port])
        guard (1...16).contains(poolSize) else { throw invalid(decoder.codingPath + [CodingKeys.poolSize], "must be 1...16 links, not \(poolSize)") }
    }
}

/// `stacks[].registrar` — where this stack publishes its acceptors and resolves names:
/// the embedded registrar of each host, or an etcd cluster shared by many hosts.
public struct RegistrarSettings: Sendable, Hashable, Decodable {
    public enum Kind: String, Sendable, Decodable, CaseIterable { case embedded, etcd }

    public var kind: Kind
    /// Address of the embedded registrar server on this host (loopback).
    public var host: String
    public var port: Int
    /// For `kind: etcd`.
    public var etcd: EtcdSettings?

    enum CodingKeys: String, CodingKey, CaseIterable { case kind, host, port, etcd }

    public init(kind: Kind = .embedded, host: String = "127.0.0.1", port: Int = 4499, etcd: EtcdSettings? = nil) {
        self.kind = kind
        self.host = host
        self.port = port
        self.etcd = etcd
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        let kindText = try container.value(.kind, default: "embedded")
        guard let kind = Kind(rawValue: kindText) else {
            throw invalid(decoder.codingPath + [CodingKeys.kind], "unknown registrar kind '\(kindText)'; available: \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.kind = kind
        etcd = try container.decodeIfPresent(EtcdSettings.self, forKey: .etcd)
        switch kind {
        case .etcd:
            guard etcd != nil else { throw invalid(decoder.codingPath + [CodingKeys.etcd], "a registrar of kind etcd needs 'etcd' with at least 'endpoints' and 'cluster'") }
            for key in [CodingKeys.host, .port] where container.contains(key) {
                throw invalid(decoder.codingPath + [key], "an etcd registrar has no '\(key.stringValue)'; its addresses are etcd.endpoints")
            }
        case .embedded:
            guard etcd == nil else { throw invalid(decoder.codingPath + [CodingKeys.etcd], "'etcd' needs kind: etcd (this registrar is embedded)") }
        }
        host = try container.value(.host, default: "127.0.0.1")
        port = try container.value(.port, default: 4499)
        try checkPort(port, decoder.codingPath + [CodingKeys.port])
        guard port != 0 else { throw invalid(decoder.codingPath + [CodingKeys.port], "the registrar needs a fixed port that every node on the host knows") }
    }
}

/// `stacks[].registrar.etcd` — an etcd cluster (v3 API over its HTTP/JSON gateway) that
/// holds this stack's nodes under `<namespace>/<cluster>/nodes/<node>`.
public struct EtcdSettings: Sendable, Hashable, Decodable {
    /// `http://host:port` or `https://host:port`, tried in order (the next when one fails).
    public var endpoints: [String]
    /// Nodes of one cluster see each other; names are unique within it.
    public var cluster: String
    public var namespace: String
    /// The registration lives this long without keep-alives (renewed every third of it).
    public var leaseTTL: ConfigDuration
    /// One request to etcd; past it, the next endpoint is tried.
    public var requestTimeout: ConfigDuration
    /// For `https` endpoints: the CA that etcd's certificate must chain to, and the client
    /// certificate when etcd requires one.
    public var trust: String?
    public var certificate: CertificateFiles?

    enum CodingKeys: String, CodingKey, CaseIterable { case endpoints, cluster, namespace, leaseTTL, requestTimeout, trust, certificate }

    public init(
        endpoints: [String], cluster: String, namespace: String = "junction", leaseTTL: ConfigDuration = .seconds(10),
        requestTimeout: ConfigDuration = .seconds(2), trust: String? = nil, certificate: CertificateFiles? = nil
    ) {
        self.endpoints = endpoints
        self.cluster = cluster
        self.namespace = namespace
        self.leaseTTL = leaseTTL
        self.requestTimeout = requestTimeout
        self.trust = trust
        self.certificate = certificate
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        endpoints = try container.decode([String].self, forKey: .endpoints)
        cluster = try container.decode(String.self, forKey: .cluster)
        namespace = try container.value(.namespace, default: "junction")
        leaseTTL = try container.value(.leaseTTL, default: .seconds(10))
        requestTimeout = try container.value(.requestTimeout, default: .seconds(2))
        trust = try container.decodeIfPresent(String.self, forKey: .trust)
        certificate = try container.decodeIfPresent(CertificateFiles.self, forKey: .certificate)
        guard !endpoints.isEmpty else { throw invalid(decoder.codingPath + [CodingKeys.endpoints], "at least one endpoint (http://host:port) is needed") }
        for (index, endpoint) in endpoints.enumerated() {
            guard Self.parse(endpoint) != nil else {
                throw invalid(
                    decoder.codingPath + [CodingKeys.endpoints, AnyCodingKey(intValue: index)!], "'\(endpoint)' is not an endpoint like http://10.0.0.5:2379 or https://etcd-1:2379")
            }
        }
        if endpoints.contains(where: { $0.hasPrefix("https://") }), trust == nil {
            throw invalid(decoder.codingPath + [CodingKeys.trust], "https endpoints need 'trust' (the PEM file of the CA that etcd's certificate chains to)")
        }
        for (key, text) in [(CodingKeys.cluster, cluster), (.namespace, namespace)] {
            guard !text.isEmpty, !text.contains("/") else { throw invalid(decoder.codingPath + [key], "must be a non-empty name without '/', not '\(text)'") }
        }
        guard leaseTTL.nanoseconds >= 2_000_000_000 else { throw invalid(decoder.codingPath + [CodingKeys.leaseTTL], "must be at least 2s, not \(leaseTTL)") }
        guard requestTimeout.nanoseconds >= 10_000_000, requestTimeout.nanoseconds < leaseTTL.nanoseconds else {
            throw invalid(decoder.codingPath + [CodingKeys.requestTimeout], "must be between 10ms and the lease TTL (\(leaseTTL)), not \(requestTimeout)")
        }
    }

    /// (tls, host, port) of `endpoint`, or nil when it is not `http(s)://host:port`.
    public static func parse(_ endpoint: String) -> (tls: Bool, host: String, port: Int)? {
        let tls: Bool
        let rest: Substring
        if endpoint.hasPrefix("http://") { (tls, rest) = (false, endpoint.dropFirst(7)) } else if endpoint.hasPrefix("https://") {
            (tls, rest) = (true, endpoint.dropFirst(8))
        } else {
            return nil
        }
        let authority = rest.hasSuffix("/") ? rest.dropLast() : rest
        guard let colon = authority.lastIndex(of: ":"), let port = Int(authority[authority.index(after: colon)...]), (1...65535).contains(port) else { return nil }
        var host = String(authority[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, !host.contains("/") else { return nil }
        return (tls, host, port)
    }

    /// The key prefix of this cluster's nodes.
    public var prefix: String { "\(namespace)/\(cluster)/nodes/" }
}

/// `routes[]` — one static route (`spec/static-routes.txt`).
public struct RouteSettings: Sendable, Decodable {
    public var match: String
    public var weight: Int
    public var resolver: String?
    public var route: ExplicitRoute?
    public var cookie: CookieSource?
    public var flags: FlagOverrides
    public var atomMapping: [String: String]
    public var logLevel: Logger.Level?
    public var certificate: CertificateFiles?
    public var compression: CompressionSettings?

    enum CodingKeys: String, CodingKey, CaseIterable { case match, weight, resolver, route, cookie, flags, atomMapping, logLevel, certificate, compression }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        match = try container.decode(String.self, forKey: .match)
        do { try RouteTable.validate(pattern: match) } catch { throw invalid(decoder.codingPath + [CodingKeys.match], error.description) }
        weight = try container.value(.weight, default: 0)
        resolver = try container.decodeIfPresent(String.self, forKey: .resolver)
        route = try container.decodeIfPresent(ExplicitRouteSettings.self, forKey: .route)?.route
        cookie = try container.decodeIfPresent(CookieSource.self, forKey: .cookie)
        flags = try container.decodeIfPresent(FlagSettings.self, forKey: .flags)?.flags ?? FlagOverrides()
        atomMapping = try container.value(.atomMapping, default: [:])
        var remoteNames: [String: String] = [:]
        for (local, remote) in atomMapping.sorted(by: { $0.key < $1.key }) {
            guard (1...255).contains(local.utf8.count), (1...255).contains(remote.utf8.count) else {
                throw invalid(decoder.codingPath + [CodingKeys.atomMapping], "an atom has 1 to 255 bytes ('\(local)' -> '\(remote)')")
            }
            if let other = remoteNames.updateValue(local, forKey: remote) {
                throw invalid(decoder.codingPath + [CodingKeys.atomMapping], "'\(other)' and '\(local)' both map to '\(remote)': the way back would be ambiguous")
            }
        }
        if let level = try container.decodeIfPresent(String.self, forKey: .logLevel) {
            guard let parsed = Logger.Level(rawValue: level) else {
                throw invalid(decoder.codingPath + [CodingKeys.logLevel], "unknown log level '\(level)'; use trace, debug, info, notice, warning, error or critical")
            }
            logLevel = parsed
        }
        certificate = try container.decodeIfPresent(CertificateFiles.self, forKey: .certificate)
        compression = try container.decodeIfPresent(CompressionSettings.self, forKey: .compression)
        guard resolver != nil || (route?.host != nil && route?.port != nil) else {
            throw invalid(decoder.codingPath, "a route needs 'resolver' (a stack name) or 'route' with 'host' and 'port'")
        }
    }

    /// The routing-table entry, with the cookie read from its source.
    public func staticRoute(environment: [String: String]) throws -> StaticRoute {
        let secret = try cookie.map { try $0.read(environment: environment, createIfMissing: false) }
        return StaticRoute(
            match: match,
            route: NetworkRoute(
                resolver: resolver, explicit: route, cookie: secret, flags: flags, atomMapping: atomMapping, logLevel: logLevel, certificate: certificate,
                compression: compression),
            weight: weight)
    }
}

/// `routes[].route` — explicit address fields.
struct ExplicitRouteSettings: Decodable {
    var route: ExplicitRoute
    enum CodingKeys: String, CodingKey, CaseIterable { case stack, host, port, tls, handshakeVersion, protocolVersion }

    init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        route = ExplicitRoute(
            stack: try container.decodeIfPresent(String.self, forKey: .stack),
            host: try container.decodeIfPresent(String.self, forKey: .host),
            port: try container.decodeIfPresent(Int.self, forKey: .port),
            tls: try container.decodeIfPresent(Bool.self, forKey: .tls),
            handshakeVersion: try container.decodeIfPresent(Int.self, forKey: .handshakeVersion),
            protocolVersion: try container.decodeIfPresent(Int.self, forKey: .protocolVersion))
        if let port = route.port { try checkPort(port, decoder.codingPath + [CodingKeys.port]) }
    }
}

/// `routes[].flags` — flag overrides.
struct FlagSettings: Decodable {
    var flags: FlagOverrides
    enum CodingKeys: String, CodingKey, CaseIterable { case remoteSpawn, compression, maxMessageSize }

    init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        flags = FlagOverrides(
            remoteSpawn: try container.decodeIfPresent(Bool.self, forKey: .remoteSpawn),
            compression: try container.decodeIfPresent(Bool.self, forKey: .compression),
            maxMessageSize: try container.decodeIfPresent(Int.self, forKey: .maxMessageSize))
        if flags.remoteSpawn == true {
            throw invalid(
                decoder.codingPath + [CodingKeys.remoteSpawn],
                "Junction nodes do not run processes spawned by peers, so remote spawn cannot be offered; remove the key (false is the default)")
        }
        if let size = flags.maxMessageSize, !(1024...(1 << 30)).contains(size) {
            throw invalid(decoder.codingPath + [CodingKeys.maxMessageSize], "must be between 1024 and 1073741824 bytes, not \(size)")
        }
    }
}

/// `limits` — bounds that protect the node.
public struct LimitSettings: Sendable, Hashable, Decodable {
    /// Messages queued for a node while its connection is being dialled, or redialled
    /// after it was lost.
    public var pendingMessages: Int
    /// Bytes queued for a node while its connection is being dialled or redialled.
    public var pendingBytes: Int
    /// How a lost connection is retried.
    public var reconnect: ReconnectSettings
    /// Past this many live connections, each new one evicts the least recently used.
    public var softConnections: Int
    /// At this many connections (handshakes and dials under way included), new attempts
    /// are refused at once.
    public var hardConnections: Int
    /// Proxies the bridges keep for pids of other nodes; past it the oldest is retired.
    public var bridgeProxies: Int
    /// A connection that holds its senders back and lets none of them go for this long
    /// is reported stalled (`connectionStalled`).
    public var stalledAfter: ConfigDuration

    enum CodingKeys: String, CodingKey, CaseIterable { case pendingMessages, pendingBytes, reconnect, softConnections, hardConnections, bridgeProxies, stalledAfter }

    public init(
        pendingMessages: Int = 10_000, pendingBytes: Int = 64 << 20, reconnect: ReconnectSettings = .init(), softConnections: Int = 1000,
        hardConnections: Int = 1200, bridgeProxies: Int = 100_000, stalledAfter: ConfigDuration = .seconds(5)
    ) {
        self.pendingMessages = pendingMessages
        self.pendingBytes = pendingBytes
        self.reconnect = reconnect
        self.softConnections = softConnections
        self.hardConnections = hardConnections
        self.bridgeProxies = bridgeProxies
        self.stalledAfter = stalledAfter
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        pendingMessages = try container.value(.pendingMessages, default: 10_000)
        pendingBytes = try container.value(.pendingBytes, default: 64 << 20)
        reconnect = try container.value(.reconnect, default: ReconnectSettings())
        softConnections = try container.value(.softConnections, default: 1000)
        hardConnections = try container.value(.hardConnections, default: 1200)
        bridgeProxies = try container.value(.bridgeProxies, default: 100_000)
        stalledAfter = try container.value(.stalledAfter, default: .seconds(5))
        guard stalledAfter.nanoseconds >= 10_000_000 else {
            throw invalid(decoder.codingPath + [CodingKeys.stalledAfter], "must be at least 10ms, not \(stalledAfter)")
        }
        guard bridgeProxies >= 1 else { throw invalid(decoder.codingPath + [CodingKeys.bridgeProxies], "must be at least 1") }
        guard softConnections >= 1, hardConnections > softConnections else {
            throw invalid(decoder.codingPath + [CodingKeys.hardConnections], "needs 1 <= softConnections < hardConnections, not \(softConnections) and \(hardConnections)")
        }
        guard pendingMessages > 0 else { throw invalid(decoder.codingPath + [CodingKeys.pendingMessages], "must be at least 1") }
        guard pendingBytes > 0 else { throw invalid(decoder.codingPath + [CodingKeys.pendingBytes], "must be at least 1") }
    }
}

/// `limits.reconnect` — retries of a lost connection: `attempts` tries, the n-th after
/// `base * 2^(n-1)` capped at `cap`, each delay moved by up to a fifth either way
/// (jitter), so peers that lost each other at once do not retry in step.
public struct ReconnectSettings: Sendable, Hashable, Decodable {
    public var attempts: Int
    public var base: ConfigDuration
    public var cap: ConfigDuration

    enum CodingKeys: String, CodingKey, CaseIterable { case attempts, base, cap }

    public init(attempts: Int = 8, base: ConfigDuration = .milliseconds(100), cap: ConfigDuration = .seconds(10)) {
        self.attempts = attempts
        self.base = base
        self.cap = cap
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        attempts = try container.value(.attempts, default: 8)
        base = try container.value(.base, default: .milliseconds(100))
        cap = try container.value(.cap, default: .seconds(10))
        guard attempts >= 0 else { throw invalid(decoder.codingPath + [CodingKeys.attempts], "must be 0 (never retry) or more, not \(attempts)") }
        guard base.nanoseconds > 0, cap.nanoseconds >= base.nanoseconds else {
            throw invalid(decoder.codingPath + [CodingKeys.cap], "needs 0 < base <= cap, not base \(base) and cap \(cap)")
        }
    }
}

func checkPort(_ port: Int, _ path: [CodingKey]) throws {
    guard (0...65535).contains(port) else { throw invalid(path, "port \(port) is outside 0...65535") }
}

/// `access[]` — one rule, applied in the order written: `blockIp`, `blockIpNet`,
/// `allowIp`, `allowIpNet` (an address or CIDR network), `blockSystem`, `allowSystem` (a
/// node name).
struct AccessEntry: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable { case blockIp, blockIpNet, allowIp, allowIpNet, blockSystem, allowSystem }

    enum Rule {
        case ip(AccessRules.IPRule)
        case blockSystem(String)
        case allowSystem(String)
    }

    let rule: Rule

    init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        let present = CodingKeys.allCases.filter { container.contains($0) }
        guard present.count == 1, let key = present.first else {
            throw invalid(decoder.codingPath, "an access rule has exactly one of \(CodingKeys.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let text = try container.decode(String.self, forKey: key)
        switch key {
        case .blockSystem, .allowSystem:
            guard let name = try? NodeName(text) else { throw invalid(decoder.codingPath + [key], "'\(text)' is not a node name (name@host)") }
            rule = key == .blockSystem ? .blockSystem(name.description) : .allowSystem(name.description)
        case .blockIp, .allowIp, .blockIpNet, .allowIpNet:
            let single = key == .blockIp || key == .allowIp
            guard let network = single ? IPAddress(text).map(IPNetwork.init) : IPNetwork(text) else {
                throw invalid(decoder.codingPath + [key], "'\(text)' is not \(single ? "an IP address" : "an IP network (address/prefix)")")
            }
            rule = .ip(key == .blockIp || key == .blockIpNet ? .block(network) : .allow(network))
        }
    }

    func apply(to rules: inout AccessRules) {
        switch rule {
        case .ip(let ipRule): rules.apply(ipRule)
        case .blockSystem(let name): rules.blockSystem(name)
        case .allowSystem(let name): rules.allowSystem(name)
        }
    }
}
