import JunctionCore
import JunctionErlang
import JunctionNative
import NIOCore

/// One row of the connections table (`junction status`, the admin endpoint's
/// `/api/connections`, the status page): a live connection or one being dialled.
public struct ConnectionStatus: Sendable, Hashable, Codable {
    public var peer: String
    public var stack: String
    /// `native` or `erlang`; empty while dialling (the route decides).
    public var kind: String
    /// `up`, `stalled` (up, but it let no waiting sender go for `limits.stalledAfter`),
    /// `connecting` (first dial) or `reconnecting` (lost, redialled with retention).
    public var state: String
    /// `incoming` or `outgoing` for a live connection.
    public var direction: String
    /// `ip:port` of the peer's socket.
    public var address: String
    /// Native link pool: links open and the pool's size (1 and 1 for Erlang).
    public var liveLinks: Int
    public var poolSize: Int
    public var bytesSent: Int
    public var bytesReceived: Int
    public var messagesSent: Int
    public var messagesReceived: Int
    /// Payload bytes over compressed bytes sent; nil when nothing was compressed.
    public var compressionRatio: Double?
    /// Seconds since the connection last read anything (heartbeats and ticks included).
    public var idleSeconds: Double?
    /// Native links lost and joined again; for a connection being redialled, the attempts.
    public var retries: Int
    /// Messages waiting for the connection: queued behind a first dial or retained while a
    /// lost one is redialled; on a live connection, those whose senders wait because it is
    /// backed up (its outbox over the high-water mark, or its socket full).
    public var queued: Int
    /// Native frames sent (or queued) that the peer has not acknowledged yet: what a link
    /// loss would send again. Peers acknowledge in batches, so a few dozen is normal. 0 for
    /// Erlang, which has no acknowledgements.
    public var unacknowledged: Int
}

/// What a reload changed.
public struct ReloadResult: Sendable, Hashable, Codable {
    public var routes: Int
    public var ipRules: Int
    public var allowedSystems: Int
    public var blockedSystems: Int
    /// Sections that differ in the file but need a restart (stacks, node, limits, bridges).
    public var needsRestart: [String]
}

/// A reload the node refused; the running configuration is unchanged.
public struct ReloadRefused: Error, Sendable, CustomStringConvertible {
    public let description: String
}

extension PeerConnection {
    var traffic: NodeMetrics.Traffic {
        if let native = self as? NativeConnection { return NodeMetrics.Traffic(native.info) }
        guard let erlang = self as? ErlangConnection else { return NodeMetrics.Traffic() }
        let traffic = erlang.traffic
        return NodeMetrics.Traffic(
            framesSent: traffic.messagesSent, bytesSent: traffic.bytesSent, framesReceived: traffic.messagesReceived, bytesReceived: traffic.bytesReceived)
    }

    /// Its row; `waiting` senders wait on it, and it is `stalled` (`StallWatch`).
    func status(waiting: Int, stalled: Bool) -> ConnectionStatus {
        let state = stalled ? "stalled" : "up"
        if let native = self as? NativeConnection {
            let info = native.info
            let traffic = NodeMetrics.Traffic(info)
            return ConnectionStatus(
                peer: peer.description, stack: stackName, kind: "native", state: state, direction: native.direction.rawValue, address: remoteAddress,
                liveLinks: info.liveLinks, poolSize: info.poolSize, bytesSent: traffic.bytesSent, bytesReceived: traffic.bytesReceived,
                messagesSent: traffic.framesSent, messagesReceived: traffic.framesReceived,
                compressionRatio: info.compressedOutput > 0 ? Double(info.compressedInput) / Double(info.compressedOutput) : nil,
                idleSeconds: info.secondsSinceLastRead, retries: info.rejoins, queued: waiting,
                unacknowledged: info.links.reduce(0) { $0 + $1.unacknowledgedFrames })
        }
        let erlang = self as! ErlangConnection
        let traffic = erlang.traffic
        return ConnectionStatus(
            peer: peer.description, stack: stackName, kind: "erlang", state: state, direction: erlang.direction.rawValue, address: remoteAddress,
            liveLinks: erlang.channel.isActive ? 1 : 0, poolSize: 1, bytesSent: traffic.bytesSent, bytesReceived: traffic.bytesReceived,
            messagesSent: traffic.messagesSent, messagesReceived: traffic.messagesReceived, compressionRatio: nil, idleSeconds: traffic.secondsSinceLastRead,
            retries: 0, queued: waiting, unacknowledged: 0)
    }
}

extension NodeMetrics.Traffic {
    /// A native connection's totals over its links.
    init(_ info: ConnectionInfo) {
        self.init(
            framesSent: info.links.reduce(0) { $0 + $1.framesSent }, bytesSent: info.links.reduce(0) { $0 + $1.bytesSent },
            framesReceived: info.links.reduce(0) { $0 + $1.framesReceived }, bytesReceived: info.links.reduce(0) { $0 + $1.bytesReceived },
            compressedInput: info.compressedInput, compressedOutput: info.compressedOutput)
    }
}

extension Node {
    /// Every connection, live or being dialled, sorted by peer.
    public func connectionStatuses() -> [ConnectionStatus] {
        var rows = connections.all().map { connection in
            let watch = stalls.state(of: ObjectIdentifier(connection))
            return connection.status(waiting: watch.waiting, stalled: watch.stalled)
        }
        let retries = runtime.withLock { $0.redialAttempts }
        for dial in connections.dials() {
            rows.append(
                ConnectionStatus(
                    peer: dial.peer.name, stack: "", kind: "", state: dial.retained ? "reconnecting" : "connecting", direction: "outgoing", address: "",
                    liveLinks: 0, poolSize: 0, bytesSent: 0, bytesReceived: 0, messagesSent: 0, messagesReceived: 0, compressionRatio: nil, idleSeconds: nil,
                    retries: retries[dial.peer] ?? 0, queued: dial.queued, unacknowledged: 0))
        }
        return rows.sorted { $0.peer < $1.peer }
    }

    /// Brings the metrics that are read rather than counted up to date: traffic per
    /// connection, connections per stack and state, messages waiting for a connection.
    public func updateMetrics() {
        let live = connections.all()
        for connection in live { metrics.count(connection) }
        for stack in config.stacks {
            metrics.gauge("junction_connections", [("stack", stack.name), ("state", "up")]).record(live.filter { $0.stackName == stack.name }.count)
        }
        let dials = connections.dials()
        metrics.gauge("junction_connections", [("stack", ""), ("state", "connecting")]).record(dials.filter { !$0.retained }.count)
        metrics.gauge("junction_connections", [("stack", ""), ("state", "reconnecting")]).record(dials.filter(\.retained).count)
        metrics.gauge("junction_retained_messages", []).record(dials.reduce(0) { $0 + $1.queued })
    }

    /// Applies the routes and access rules of `new` (read again from the config file)
    /// without a restart. Live connections stay; those the new rules block are closed.
    /// Refused, changing nothing, when a route's cookie cannot be read or the atom
    /// mappings change (messages in flight were renamed with the old ones: restart).
    public func reload(_ new: JunctionConfig, environment: [String: String]) throws -> ReloadResult {
        let mappings = { (config: JunctionConfig) in config.routes.map { "\($0.match)=\($0.atomMapping.sorted { $0.key < $1.key })" }.filter { !$0.hasSuffix("=[]") } }
        guard mappings(new) == mappings(config) else {
            throw ReloadRefused(description: "the routes' atom mappings changed; they apply from a restart (messages in flight were renamed with the old ones)")
        }
        let table: [StaticRoute]
        do { table = try new.routes.map { try $0.staticRoute(environment: environment) } } catch {
            throw ReloadRefused(description: "\(error)")
        }
        do { try routes.replaceRoutes(with: table) } catch { throw ReloadRefused(description: "\(error)") }
        let rules = new.access
        changeRules(.accessRulesReloaded(rules)) { $0 = rules }
        var restart: [String] = []
        if new.node != config.node { restart.append("node") }
        if new.stacks != config.stacks { restart.append("stacks") }
        if new.limits != config.limits { restart.append("limits") }
        if new.bridges != config.bridges { restart.append("bridges") }
        if new.admin != config.admin { restart.append("admin") }
        logger.notice(
            "reloaded \(table.count) routes and the access rules\(restart.isEmpty ? "" : "; changes to \(restart.joined(separator: ", ")) apply from a restart")")
        return ReloadResult(
            routes: table.count, ipRules: rules.ipRules.count, allowedSystems: rules.allowedSystems.count, blockedSystems: rules.blockedSystems.count,
            needsRestart: restart)
    }
}
