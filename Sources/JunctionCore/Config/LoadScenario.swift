import Foundation

/// A load test as `junction load SCENARIO.yaml` reads it (keys in Config/load/README.md):
/// the nodes to start on loopback, the routes to drive from the runner's own node, and
/// the faults to inject.
public struct LoadScenario: Sendable, Decodable {
    public var name: String
    /// Measured time, after `warmup`.
    public var duration: ConfigDuration
    /// Traffic flows but is not measured.
    public var warmup: ConfigDuration
    /// After the run, how long replies still in flight are waited for before counting as lost.
    public var drain: ConfigDuration
    public var nodes: [LoadNode]
    public var routes: [LoadRoute]
    public var faults: [LoadFault]
    /// The runner's own node: its `limits` (retention while a peer is lost, reconnection).
    public var limits: LimitSettings

    enum CodingKeys: String, CodingKey, CaseIterable { case name, duration, warmup, drain, nodes, routes, faults, limits }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        duration = try container.decode(ConfigDuration.self, forKey: .duration)
        warmup = try container.value(.warmup, default: .seconds(1))
        drain = try container.value(.drain, default: .seconds(5))
        nodes = try container.decode([LoadNode].self, forKey: .nodes)
        routes = try container.decode([LoadRoute].self, forKey: .routes)
        faults = try container.value(.faults, default: [])
        limits = try container.value(.limits, default: LimitSettings())
        guard duration.nanoseconds >= 1_000_000_000 else { throw invalid(decoder.codingPath + [CodingKeys.duration], "must be at least 1s, not \(duration)") }
        try validate(path: decoder.codingPath)
    }

    /// Cross-references: unique node names, routes and faults naming nodes that exist,
    /// faults inside the run.
    func validate(path: [CodingKey]) throws {
        var names: Set<NodeName> = []
        for (index, node) in nodes.enumerated() where !names.insert(node.name).inserted {
            throw invalid(path + [CodingKeys.nodes, AnyCodingKey(intValue: index)!, LoadNode.CodingKeys.name], "node '\(node.name)' is listed twice")
        }
        guard !routes.isEmpty else { throw invalid(path + [CodingKeys.routes], "at least one route is needed") }
        for (index, route) in routes.enumerated() {
            let routePath = path + [CodingKeys.routes, AnyCodingKey(intValue: index)!]
            guard names.contains(route.node) else {
                throw invalid(routePath + [LoadRoute.CodingKeys.node], "no node '\(route.node)' in nodes: \(nodes.map(\.name.description).joined(separator: ", "))")
            }
            if routes[..<index].contains(where: { $0.name == route.name }) {
                throw invalid(routePath + [LoadRoute.CodingKeys.name], "route name '\(route.name)' is used twice")
            }
            if let compression = route.compression {
                if nodes.first(where: { $0.name == route.node })?.kind == .erlang {
                    throw invalid(routePath + [LoadRoute.CodingKeys.compression], "\(route.node) is reached over Erlang distribution, which has no compression")
                }
                if routes[..<index].contains(where: { $0.node == route.node && $0.compression != compression }) {
                    throw invalid(routePath + [LoadRoute.CodingKeys.compression], "another route to \(route.node) compresses differently: one node, one setting")
                }
            }
        }
        let end = warmup.nanoseconds + duration.nanoseconds
        for (index, fault) in faults.enumerated() {
            let faultPath = path + [CodingKeys.faults, AnyCodingKey(intValue: index)!]
            guard names.contains(fault.node) else {
                throw invalid(faultPath + [LoadFault.CodingKeys.node], "no node '\(fault.node)' in nodes")
            }
            if fault.action == .blockIp, nodes.first(where: { $0.name == fault.node })?.kind == .erlang {
                throw invalid(
                    faultPath + [LoadFault.CodingKeys.action],
                    "\(fault.node) is an OTP node, reached through epmd at 127.0.0.1 like every OTP node of the run: blocking its address would block them all; use pause or dropLink"
                )
            }
            guard fault.at.nanoseconds < end else {
                throw invalid(faultPath + [LoadFault.CodingKeys.at], "\(fault.at) is after the run ends (warmup + duration = \(ConfigDuration(nanoseconds: end)))")
            }
        }
    }

    /// Reads a scenario file; errors name the file and the key path.
    public static func load(file path: String) throws -> LoadScenario {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ConfigError(keyPath: "", message: "cannot read the scenario: \(error.localizedDescription)", file: path)
        }
        return try ConfigLoader.decode(LoadScenario.self, yaml: text, file: path)
    }
}

/// `nodes[]`: a node the runner starts on loopback and stops at the end.
public struct LoadNode: Sendable, Decodable {
    public enum Kind: String, Sendable, Decodable, CaseIterable {
        /// `junction run` with a native stack; its `echo` answers `{From, Msg}`.
        case native
        /// An OTP node (`erl`) with an `echo` process answering `{From, Msg}`.
        case erlang
        /// `junction run` with a native and an Erlang stack and `bridges`.
        case gateway
    }

    public var name: NodeName
    public var kind: Kind
    /// (gateway) The bridges it exposes.
    public var bridges: [BridgeSettings]
    /// (native, gateway) How its native stack compresses what it sends.
    public var compression: CompressionSettings?

    enum CodingKeys: String, CodingKey, CaseIterable { case name, kind, bridges, compression }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        let text = try container.decode(String.self, forKey: .name)
        do { name = try NodeName(text) } catch { throw invalid(decoder.codingPath + [CodingKeys.name], error.description) }
        let kindText = try container.decode(String.self, forKey: .kind)
        guard let kind = Kind(rawValue: kindText) else {
            throw invalid(decoder.codingPath + [CodingKeys.kind], "unknown node kind '\(kindText)'; available: \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.kind = kind
        bridges = try container.value(.bridges, default: [])
        compression = try container.decodeIfPresent(CompressionSettings.self, forKey: .compression)
        if kind != .gateway, !bridges.isEmpty { throw invalid(decoder.codingPath + [CodingKeys.bridges], "only a gateway has bridges") }
        if kind == .erlang, compression != nil { throw invalid(decoder.codingPath + [CodingKeys.compression], "Erlang distribution has no compression") }
    }
}

/// `routes[]`: traffic from the runner to `process` on `node` (an `echo`, or a gateway's
/// bridge to one), answered by `{echo, Msg}`; each round trip is one latency sample.
public struct LoadRoute: Sendable, Decodable {
    public var name: String
    public var node: NodeName
    public var process: String
    /// Sending processes on the runner.
    public var senders: Int
    /// Messages per second over all senders (open loop: latency counts from when each
    /// message was due); nil: closed loop, each sender waits for its reply.
    public var rate: Int?
    /// Messages over all senders, after which the route stops sending (the run still
    /// lasts `duration`); nil: until the run ends.
    public var messages: Int?
    public var payload: LoadPayload
    /// How the runner compresses what it sends to this route's node (over the native
    /// stack), instead of the defaults.
    public var compression: CompressionSettings?

    enum CodingKeys: String, CodingKey, CaseIterable { case name, node, process, senders, rate, messages, payload, compression }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        let text = try container.decode(String.self, forKey: .node)
        do { node = try NodeName(text) } catch { throw invalid(decoder.codingPath + [CodingKeys.node], error.description) }
        name = try container.value(.name, default: text)
        process = try container.value(.process, default: "echo")
        senders = try container.value(.senders, default: 1)
        rate = try container.decodeIfPresent(Int.self, forKey: .rate)
        messages = try container.decodeIfPresent(Int.self, forKey: .messages)
        compression = try container.decodeIfPresent(CompressionSettings.self, forKey: .compression)
        payload = try container.value(.payload, default: LoadPayload(kind: .small, sizes: [LoadPayload.Size(bytes: 0, weight: 1)]))
        guard (1...1000).contains(senders) else { throw invalid(decoder.codingPath + [CodingKeys.senders], "must be 1...1000, not \(senders)") }
        if let messages, messages < senders {
            throw invalid(decoder.codingPath + [CodingKeys.messages], "must be at least one message per sender (\(senders)), not \(messages)")
        }
        if let rate, rate < senders {
            throw invalid(decoder.codingPath + [CodingKeys.rate], "must be at least one message per second per sender (\(senders)), not \(rate)")
        }
    }
}

/// `routes[].payload`: what each message carries besides its sequence number and time.
public struct LoadPayload: Sendable, Decodable {
    public enum Kind: String, Sendable, Decodable, CaseIterable {
        /// Nothing more (`{m, Seq, T}`).
        case small
        /// A binary of the chosen size.
        case binary
        /// JSON-like text of the chosen size (compresses like real service traffic).
        case json
    }

    public struct Size: Sendable, Decodable, Hashable {
        public var bytes: Int
        public var weight: Int
        enum CodingKeys: String, CodingKey, CaseIterable { case bytes, weight }
        init(bytes: Int, weight: Int) {
            self.bytes = bytes
            self.weight = weight
        }
        public init(from decoder: Decoder) throws {
            let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
            bytes = try container.decode(Int.self, forKey: .bytes)
            weight = try container.value(.weight, default: 1)
            guard (0...(16 << 20)).contains(bytes) else { throw invalid(decoder.codingPath + [CodingKeys.bytes], "must be 0...16777216, not \(bytes)") }
            guard weight >= 1 else { throw invalid(decoder.codingPath + [CodingKeys.weight], "must be at least 1") }
        }
    }

    public var kind: Kind
    /// Sizes drawn with their weights (`size: N` is one size).
    public var sizes: [Size]

    enum CodingKeys: String, CodingKey, CaseIterable { case kind, size, sizes }

    init(kind: Kind, sizes: [Size]) {
        self.kind = kind
        self.sizes = sizes
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        let kindText = try container.decode(String.self, forKey: .kind)
        guard let kind = Kind(rawValue: kindText) else {
            throw invalid(decoder.codingPath + [CodingKeys.kind], "unknown payload kind '\(kindText)'; available: \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.kind = kind
        if let size = try container.decodeIfPresent(Int.self, forKey: .size) {
            guard !container.contains(.sizes) else { throw invalid(decoder.codingPath + [CodingKeys.sizes], "give size or sizes, not both") }
            guard (0...(16 << 20)).contains(size) else { throw invalid(decoder.codingPath + [CodingKeys.size], "must be 0...16777216, not \(size)") }
            sizes = [Size(bytes: size, weight: 1)]
        } else {
            sizes = try container.value(.sizes, default: [Size(bytes: kind == .small ? 0 : 1024, weight: 1)])
        }
        guard !sizes.isEmpty else { throw invalid(decoder.codingPath + [CodingKeys.sizes], "at least one size is needed") }
        if kind == .small, sizes.contains(where: { $0.bytes != 0 }) {
            throw invalid(decoder.codingPath + [CodingKeys.kind], "a small payload has no size; use binary or json")
        }
    }

    /// The size for a draw `unit` in 0..<1, by weight.
    public func size(at unit: Double) -> Int {
        let total = sizes.reduce(0) { $0 + $1.weight }
        var point = unit * Double(total)
        for size in sizes {
            point -= Double(size.weight)
            if point < 0 { return size.bytes }
        }
        return sizes[sizes.count - 1].bytes
    }
}

/// `faults[]`: at `at` (counted from the start of the warm-up), do something to `node`.
public struct LoadFault: Sendable, Decodable {
    public enum Action: String, Sendable, Decodable, CaseIterable {
        /// SIGKILL the node's process; with `for`, start it again after that long.
        case kill
        /// SIGSTOP the node's process for `for`, then SIGCONT.
        case pause
        /// Block the node's address on the runner's node for `for` (an IP rule), then allow
        /// it. Every native node and gateway listens on a loopback address of its own.
        case blockIp
        /// Abort the runner's connection to the node (its sockets close at once).
        case dropLink
    }

    public var at: ConfigDuration
    public var action: Action
    public var node: NodeName
    public var duration: ConfigDuration?

    enum CodingKeys: String, CodingKey, CaseIterable { case at, action, node, `for` }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        at = try container.decode(ConfigDuration.self, forKey: .at)
        let actionText = try container.decode(String.self, forKey: .action)
        guard let action = Action(rawValue: actionText) else {
            throw invalid(decoder.codingPath + [CodingKeys.action], "unknown fault '\(actionText)'; available: \(Action.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.action = action
        let text = try container.decode(String.self, forKey: .node)
        do { node = try NodeName(text) } catch { throw invalid(decoder.codingPath + [CodingKeys.node], error.description) }
        duration = try container.decodeIfPresent(ConfigDuration.self, forKey: .for)
        if (action == .pause || action == .blockIp), duration == nil {
            throw invalid(decoder.codingPath + [CodingKeys.for], "\(action.rawValue) needs 'for' (how long)")
        }
    }
}
