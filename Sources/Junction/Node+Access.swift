import JunctionCore
import JunctionErlang
import JunctionNative
import JunctionTerm
import Logging
import NIOCore

/// A send or dial refused by a block rule.
public struct AccessDenied: Error, Sendable, CustomStringConvertible {
    public let peer: String
    public let rule: String
    public var description: String { "\(peer) is blocked by the rule '\(rule)'; allow it (allowSystem, allowIp or allowIpNet) to reach it again" }
}

/// A send to a node whose connection `disconnectSystem` closed.
public struct DisconnectedByRequest: Error, Sendable, CustomStringConvertible {
    public let peer: String
    public var description: String { "the connection to \(peer) was closed by a disconnectSystem request; send connectSystem to connect again" }
}

/// What a component may ask of the network (`spec/network-status-port.txt`). Each is
/// answered by the matching event on the status port once applied.
public enum NetworkRequest: Sendable, Hashable {
    case disconnectSystem(NodeName)
    case connectSystem(NodeName)
    case blockSystem(NodeName)
    case blockIp(IPAddress)
    case blockIpNet(IPNetwork)
    case allowSystem(NodeName)
    case allowIp(IPAddress)
    case allowIpNet(IPNetwork)
}

extension PeerConnection {
    var info: PeerInfo { PeerInfo(stack: stackName, node: peer.description, address: remoteAddress) }

    /// The IP of `remoteAddress` (`ip:port`).
    var remoteIP: IPAddress? {
        guard let colon = remoteAddress.lastIndex(of: ":") else { return nil }
        return IPAddress(String(remoteAddress[..<colon]))
    }
}

extension SocketAddress {
    var ip: IPAddress? { ipAddress.flatMap(IPAddress.init) }
}

extension Node {
    /// The network status: a snapshot of the connections and rules, then every change.
    /// A subscriber that falls more than 1024 updates behind gets `.missed(n)`.
    public func networkStatus() -> AsyncStream<NetworkStatusUpdate> {
        status.subscribe { NetworkSnapshot(connections: connections.all().map(\.info), rules: access.withLock { $0 }) }
    }

    /// The rules in force.
    public var accessRules: AccessRules { access.withLock { $0 } }

    /// Carries out `request`; its event is published once it is applied.
    public func request(_ request: NetworkRequest) async {
        switch request {
        case .disconnectSystem(let peer):
            disconnected.withLock { _ = $0.insert(peer.atom) }
            connections.connection(peer.atom)?.close()
        case .connectSystem(let peer):
            do {
                try await connectSystem(peer)
            } catch {
                logger.notice("connectSystem \(peer): \(error)")
            }
        case .blockSystem(let peer):
            changeRules(.blockedSystem(peer.description)) { $0.blockSystem(peer.description) }
        case .allowSystem(let peer):
            changeRules(.allowedSystem(peer.description)) { $0.allowSystem(peer.description) }
        case .blockIp(let address):
            changeRules(.blockedIp(address)) { $0.apply(.block(IPNetwork(address))) }
        case .blockIpNet(let network):
            changeRules(.blockedIpNet(network)) { $0.apply(.block(network)) }
        case .allowIp(let address):
            changeRules(.allowedIp(address)) { $0.apply(.allow(IPNetwork(address))) }
        case .allowIpNet(let network):
            changeRules(.allowedIpNet(network)) { $0.apply(.allow(network)) }
        }
    }

    /// `connectSystem` that says whether it worked: lifts a `disconnectSystem` and
    /// connects unless a connection is up or being dialled already.
    public func connectSystem(_ peer: NodeName) async throws {
        disconnected.withLock { _ = $0.remove(peer.atom) }
        guard connections.connection(peer.atom) == nil, !connections.isDialling(peer.atom) else { return }
        _ = try await connect(peer)
    }

    /// Applies a rule change and publishes its event at once; then closes the live
    /// connections the new rules block.
    func changeRules(_ event: NetworkEvent, _ change: (inout AccessRules) -> Void) {
        status.publish(event) { access.withLock { change(&$0) } }
        logger.debug("\(event)")
        for connection in connections.all() {
            if case .blocked(let rule) = decision(system: connection.peer.description, address: connection.remoteIP) {
                logger.notice("closing the connection to \(connection.peer): blocked by '\(rule)'")
                // Out of the table first, so the next send dials and meets the rule.
                connections.remove(connection)
                connection.abort()
            }
        }
    }

    func decision(system: String?, address: IPAddress?) -> AccessRules.Decision {
        access.withLock { $0.decision(system: system, address: address) }
    }

    /// Accept-time check, before any handshake byte is read: an address the IP rules
    /// block is refused at once, unless an allowed system might be behind it (then the
    /// handshake decides, when the name is known).
    func acceptsConnection(_ channel: any Channel, stack: String) -> Bool {
        let address = channel.remoteAddress
        let (decision, canOverride) = access.withLock { ($0.decision(system: nil, address: address?.ip), $0.allowListCanOverride) }
        if case .blocked(let rule) = decision, !canOverride {
            logger.notice("refused a connection from \(address?.description ?? "?") on stack \(stack): blocked by '\(rule)'")
            return false
        }
        let timeout = config.stacks.first { $0.name == stack }?.handshakeTimeout ?? config.defaultStack.handshakeTimeout
        return admitsSocket(channel, handshakeTimeout: timeout.timeAmount)
    }

    /// Why `peer` connecting from `address` may not be admitted, if it may not.
    func refusal(of peer: NodeName, address: SocketAddress?) -> String? {
        if disconnected.withLock({ $0.contains(peer.atom) }) {
            return "\(peer) was disconnected by request; this node accepts it again after connectSystem"
        }
        if case .blocked(let rule) = decision(system: peer.description, address: address?.ip) {
            return "\(peer) is blocked by '\(rule)'"
        }
        return nil
    }

    /// Dial-time check by name: a blocked or disconnected peer fails fast, with the
    /// rule or request that stops it (every sender waiting for the dial gets this error).
    func checkDialAllowed(_ peer: Atom) throws {
        if disconnected.withLock({ $0.contains(peer) }) { throw DisconnectedByRequest(peer: peer.name) }
        if case .blocked(let rule) = decision(system: peer.name, address: nil) {
            throw AccessDenied(peer: peer.name, rule: rule)
        }
    }

    /// Dial-time check of the address a route resolved to. A host name is looked up
    /// (blocking, once more than the dial's own lookup) only while IP rules exist.
    func checkDialable(_ peer: NodeName, host: String, port: Int) throws {
        let hasIPRules = access.withLock { !$0.ipRules.isEmpty }
        let address = IPAddress(host) ?? (hasIPRules ? (try? SocketAddress.makeAddressResolvingHost(host, port: port))?.ip : nil)
        if case .blocked(let rule) = decision(system: peer.description, address: address) {
            throw AccessDenied(peer: peer.description, rule: rule)
        }
    }

    /// Publishes that `connection` is up, with the table updated under the same lock.
    func announceEstablished(_ connection: any PeerConnection) {
        let event = NetworkEvent.connectionEstablished(connection.info)
        status.publish(event) { install(connection) }
        logger.debug("\(event)", metadata: ["junction.peer": "\(connection.peer)"])
        metrics.handshake(stack: connection.stackName, failedBecause: nil)
        metrics.connectionEvent("established", stack: connection.stackName)
        _ = runtime.withLock { $0.redialAttempts.removeValue(forKey: connection.peer.atom) }
        enforceSoftLimit(after: connection)
    }

    /// (Both stacks' delegates) a handshake failed.
    public func handshakeFailed(stack: String, reason: String) {
        metrics.handshake(stack: stack, failedBecause: reason)
    }

    /// (Both stacks' delegates) an acceptor failed and is being bound again.
    public func networkFailed(stack: String, reason: String) {
        status.publish(.criticalNetworkFailure(stack: stack, reason: reason))
    }

    public func networkRestored(stack: String, address: SocketAddress) {
        status.publish(.networkRestored(stack: stack, address: "\(address.ipAddress ?? "?"):\(address.port ?? 0)"))
    }

    /// Publishes that `connection` ended: closed gracefully, or lost with `error`. A lost
    /// connection is redialled with backoff while its peer's messages are retained.
    func announceEnded(_ connection: any PeerConnection, error: (any Error)?) {
        let peer = connection.peer
        let redial = error != nil && !disconnected.withLock { $0.contains(peer.atom) } && refusal(of: peer, address: nil) == nil
        let event: NetworkEvent = error.map { .connectionLost(connection.info, reason: "\($0)") } ?? .connectionClosed(connection.info)
        var retaining = false
        status.publish(event) {
            retaining = redial && connections.markLost(connection)
            if !retaining { connections.remove(connection) }
        }
        logger.debug("\(event)", metadata: ["junction.peer": "\(peer)"])
        metrics.connectionEvent(error == nil ? "closed" : "lost", stack: connection.stackName)
        metrics.count(connection, ended: true)
        noteConnectionEnded()
        bridgeTargetEnded(peer.atom, retire: !retaining)
        monitorsEnded(peer: peer.atom)
        if retaining { startRedialling(peer, info: connection.info) }
    }

    /// Redials a lost connection as `PeerLifecycle` says until it is back (by this dial
    /// or the peer's), or drops what was retained after the last attempt.
    func startRedialling(_ peer: NodeName, info: PeerInfo) {
        let task = Task {
            var lifecycle = PeerLifecycle(settings: config.limits.reconnect)
            var action = lifecycle.lost(jitter: Double.random(in: 0..<1))
            while case .retry(let delay) = action {
                try? await Task.sleep(for: delay)
                guard !Task.isCancelled, connections.isRetaining(peer.atom) else { return }
                metrics.reconnectAttempt(stack: info.stack)
                runtime.withLock { $0.redialAttempts[peer.atom, default: 0] += 1 }
                do {
                    // `established` installs it and flushes what was retained.
                    _ = try await connect(peer)
                    return
                } catch {
                    logger.debug("redialling \(peer) failed: \(error)")
                    action = lifecycle.attemptFailed(jitter: Double.random(in: 0..<1))
                }
            }
            var dropped = 0
            let event = status.publish {
                dropped = connections.dropRetained(peer.atom)
                return .connectionDropped(info, droppedMessages: dropped)
            }
            logger.debug("\(event)")
            metrics.dropped(dropped, reason: "reconnect_failed")
            metrics.connectionEvent("dropped", stack: info.stack)
            _ = runtime.withLock { $0.redialAttempts.removeValue(forKey: peer.atom) }
            bridgeTargetEnded(peer.atom, retire: true)
            _ = runtime.withLock { $0.dials.removeValue(forKey: peer.atom) }
        }
        runtime.withLock { $0.dials[peer.atom] = task }
    }
}
