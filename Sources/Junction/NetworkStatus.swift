import JunctionCore
import Synchronization

/// A connection's far end, as status events name it.
public struct PeerInfo: Sendable, Hashable, CustomStringConvertible {
    public var stack: String
    public var node: String
    /// `ip:port` of the connection's socket.
    public var address: String

    public init(stack: String, node: String, address: String) {
        self.stack = stack
        self.node = node
        self.address = address
    }

    public var description: String { "\(node) at \(address) (stack \(stack))" }
}

/// What the network status port reports (`spec/network-status-port.txt`).
public enum NetworkEvent: Sendable, Hashable, CustomStringConvertible {
    case connectionEstablished(PeerInfo)
    case connectionLost(PeerInfo, reason: String)
    case connectionDropped(PeerInfo, droppedMessages: Int)
    case connectionClosed(PeerInfo)
    /// Senders to this peer have waited for `limits.stalledAfter` and the connection let
    /// none of them go: it takes nothing more (its peer does not read, or its links are
    /// down). `waitingSenders` is how many wait now.
    case connectionStalled(PeerInfo, waitingSenders: Int)
    /// A stalled connection took more again and let its senders go, `stalledFor` after it
    /// stopped.
    case connectionResumed(PeerInfo, stalledFor: Duration)
    case softConnectionLimitReached(limit: Int)
    case hardConnectionLimitReached(limit: Int)
    /// A stack's network layer (an acceptor) failed and is being restarted; established
    /// connections go on, and the access rules apply to the restarted one unchanged.
    case criticalNetworkFailure(stack: String, reason: String)
    /// The stack listens again after a `criticalNetworkFailure` (`ip:port`).
    case networkRestored(stack: String, address: String)
    case blockedSystem(String)
    case blockedIp(IPAddress)
    case blockedIpNet(IPNetwork)
    case allowedSystem(String)
    case allowedIp(IPAddress)
    case allowedIpNet(IPNetwork)
    /// A node registered in the etcd cluster of a stack's registrar (seen by its watch).
    case nodeJoined(stack: String, node: String)
    /// A node's registration left that cluster (a graceful stop, or its lease expired).
    case nodeLeft(stack: String, node: String)
    /// A stack's etcd registrar cannot follow etcd (unreachable, or without quorum):
    /// resolves come from its cache, stale, and the registration holds while its lease does.
    case registrarStale(stack: String, reason: String)
    /// It follows etcd again; the cache is fresh.
    case registrarFresh(stack: String)
    /// The access rules were replaced by a config reload; these are the rules now.
    case accessRulesReloaded(AccessRules)

    public var description: String {
        switch self {
        case .connectionEstablished(let peer): return "connectionEstablished \(peer)"
        case .connectionLost(let peer, let reason): return "connectionLost \(peer): \(reason)"
        case .connectionDropped(let peer, let count): return "connectionDropped \(peer), \(count) queued messages dropped"
        case .connectionClosed(let peer): return "connectionClosed \(peer)"
        case .connectionStalled(let peer, let waiting): return "connectionStalled \(peer), \(waiting) \(waiting == 1 ? "sender" : "senders") waiting"
        case .connectionResumed(let peer, let stalledFor):
            return "connectionResumed \(peer) after \(Int((stalledFor.seconds * 1000).rounded())) ms stalled"
        case .softConnectionLimitReached(let limit): return "softConnectionLimitReached (\(limit) connections)"
        case .hardConnectionLimitReached(let limit): return "hardConnectionLimitReached (\(limit) connections)"
        case .criticalNetworkFailure(let stack, let reason): return "criticalNetworkFailure on stack \(stack): \(reason)"
        case .networkRestored(let stack, let address): return "networkRestored on stack \(stack): listening on \(address)"
        case .blockedSystem(let system): return "blockedSystem \(system)"
        case .blockedIp(let address): return "blockedIp \(address)"
        case .blockedIpNet(let network): return "blockedIpNet \(network)"
        case .allowedSystem(let system): return "allowedSystem \(system)"
        case .allowedIp(let address): return "allowedIp \(address)"
        case .allowedIpNet(let network): return "allowedIpNet \(network)"
        case .nodeJoined(let stack, let node): return "nodeJoined \(node) (stack \(stack))"
        case .nodeLeft(let stack, let node): return "nodeLeft \(node) (stack \(stack))"
        case .registrarStale(let stack, let reason): return "registrarStale on stack \(stack): \(reason)"
        case .registrarFresh(let stack): return "registrarFresh on stack \(stack)"
        case .accessRulesReloaded(let rules):
            return "accessRulesReloaded (\(rules.ipRules.count) IP rules, \(rules.allowedSystems.count) allowed and \(rules.blockedSystems.count) blocked systems)"
        }
    }
}

/// The state a subscriber starts from.
public struct NetworkSnapshot: Sendable, Hashable {
    public var connections: [PeerInfo]
    public var rules: AccessRules
}

/// One item of a status subscription: the snapshot first, then every change. When the
/// subscriber falls behind by more than its buffer, the events it missed are counted and
/// reported as soon as there is room again.
public enum NetworkStatusUpdate: Sendable, Hashable {
    case snapshot(NetworkSnapshot)
    case event(NetworkEvent)
    case missed(Int)
}

/// Fans network events out to subscribers without ever waiting for them: each has a
/// bounded buffer, and overflow is reported to it rather than blocking the network.
final class NetworkStatusPort: Sendable {
    struct Subscriber {
        let continuation: AsyncStream<NetworkStatusUpdate>.Continuation
        var missed = 0
    }

    struct State: ~Copyable {
        var subscribers: [Int: Subscriber] = [:]
        var nextID = 0
    }

    let state = Mutex(State())
    let bufferSize: Int

    init(bufferSize: Int = 1024) { self.bufferSize = bufferSize }

    /// A subscription that starts with `snapshot()`, taken so that no event falls between
    /// it and the first change.
    func subscribe(snapshot: () -> NetworkSnapshot) -> AsyncStream<NetworkStatusUpdate> {
        let (stream, continuation) = AsyncStream.makeStream(of: NetworkStatusUpdate.self, bufferingPolicy: .bufferingOldest(bufferSize))
        let id = state.withLock { state -> Int in
            continuation.yield(.snapshot(snapshot()))
            defer { state.nextID += 1 }
            state.subscribers[state.nextID] = Subscriber(continuation: continuation)
            return state.nextID
        }
        continuation.onTermination = { _ in self.state.withLock { _ = $0.subscribers.removeValue(forKey: id) } }
        return stream
    }

    /// Sends `event` to every subscriber, `update` applied under the same lock as
    /// `subscribe`'s snapshot.
    func publish(_ event: NetworkEvent, while update: () -> Void = {}) {
        publish {
            update()
            return event
        }
    }

    /// Applies a change and sends the event it returns, under the snapshot's lock.
    @discardableResult
    func publish(_ change: () -> NetworkEvent) -> NetworkEvent {
        state.withLock { state in
            let event = change()
            for (id, var subscriber) in state.subscribers {
                if subscriber.missed > 0, case .enqueued = subscriber.continuation.yield(.missed(subscriber.missed)) {
                    subscriber.missed = 0
                }
                if subscriber.missed > 0 || !Self.enqueued(subscriber.continuation.yield(.event(event))) {
                    subscriber.missed += 1
                }
                state.subscribers[id] = subscriber
            }
            return event
        }
    }

    static func enqueued(_ result: AsyncStream<NetworkStatusUpdate>.Continuation.YieldResult) -> Bool {
        if case .enqueued = result { return true }
        return false
    }
}
