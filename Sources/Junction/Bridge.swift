import DequeModule
import JunctionCore
import JunctionErlang
import JunctionNative
import JunctionTerm
import Synchronization

/// The bridges of a node (DESIGN.md "Bridging") and the identities they map.
///
/// A message forwarded toward node T keeps T's own pids and gets, for every pid of a
/// third node, a proxy: a process on this node that forwards what it receives to that
/// pid, mapping the same way on the return path. A proxy met again on its way back to
/// its original's node becomes the original. An `[alias | Ref]` reply tag whose alias T
/// cannot reach is replaced by a plain reference of this node, and put back when the
/// reply comes through a proxy. Proxies and tags are bounded (the oldest retire first)
/// and retired when their node's connection closes or is dropped.
final class Bridges: Sendable {
    struct State: ~Copyable {
        /// Bridge name -> the (node, process) it forwards to and its process here.
        var bridges: [String: (settings: BridgeSettings, handle: ProcessHandle)] = [:]
        /// Bridge name -> the monitor it holds on its target process (Erlang targets).
        var targetMonitors: [String: Reference] = [:]
        var proxies: [Pid: ProcessHandle] = [:]
        /// Proxy pid id -> the pid it stands for.
        var originals: [UInt32: Pid] = [:]
        /// Proxies by age, as (original, proxy id); entries of retired proxies are
        /// skipped when they come up.
        var proxyOrder = Deque<(original: Pid, proxy: UInt32)>()
        var tags: [Reference: Term] = [:]
        var tagOrder = Deque<Reference>()
    }

    let state = Mutex(State())
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    var proxyCount: Int { state.withLock { $0.proxies.count } }
}

extension Node {
    /// Exposes `name` on this node: every message sent to it goes on to `process` on
    /// `node`, reached through the routes, with pids mapped to proxies on the way.
    /// Monitors of `name` fire with the target's exit reason when it exits, and with
    /// `noconnection` when the connection to `node` ends.
    @discardableResult
    public func bridge(_ name: String, to process: String, on node: NodeName) throws -> ProcessHandle {
        guard node != self.name else { throw BridgeError("a bridge forwards to another node, not to this one (\(node))") }
        let handle = try spawn(name: name)
        let settings = BridgeSettings(name: name, node: node, process: process)
        bridges.state.withLock { $0.bridges[name] = (settings, handle) }
        Task(executorPreference: executor) {
            while let message = try? await handle.receive() {
                if case .term(.tuple(let down)) = message.payload, down.count == 5, down[0] == .atom("DOWN"), case .ref(let reference) = down[1],
                    self.bridges.state.withLock({ $0.targetMonitors[name] == reference ? $0.targetMonitors.removeValue(forKey: name) : nil }) != nil
                {
                    // The target process exited: watchers of the bridge hear its reason.
                    self.notifyWatchers(of: handle, reason: down[4])
                    continue
                }
                self.monitorTarget(of: name, process: process, on: node, from: handle.pid)
                await self.forward(message.payload, to: .name(process, on: node), from: handle.pid)
            }
        }
        logger.info("bridge '\(name)' forwards to \(process) on \(node)")
        return handle
    }

    /// Someone monitors `process`: if it is a bridge, it starts watching its target.
    func bridgeWatched(_ process: ProcessHandle) {
        guard let name = process.name, let bridge = bridges.state.withLock({ $0.bridges[name] }), bridge.handle === process else { return }
        monitorTarget(of: name, process: bridge.settings.process, on: bridge.settings.node, from: process.pid)
    }

    /// A bridge monitors its target process by name once a connection to its node is up,
    /// so monitors of the bridge fire with the target's exit reason when it goes away (and
    /// with `noconnection` when the connection ends).
    func monitorTarget(of bridge: String, process: String, on node: NodeName, from bridgePid: Pid) {
        guard bridges.state.withLock({ $0.targetMonitors[bridge] == nil }), let connection = connections.connection(node.atom),
            let reference = try? sendMonitor(from: bridgePid, on: .name(process, on: node), over: connection)
        else { return }
        bridges.state.withLock { $0.targetMonitors[bridge] = reference }
    }

    /// Maps the identities in `payload` for the destination's node and sends it on. A
    /// payload with none is passed on as the bytes it came in.
    func forward(_ payload: Payload, to destination: Destination, from sender: Pid) async {
        let target: Atom
        switch destination {
        case .name(_, let node): target = node.atom
        case .pid(let pid): target = pid.node
        case .alias(let alias): target = alias.node
        }
        do {
            var minted: [ProcessHandle] = []
            var retired: [ProcessHandle] = []
            let mapped: Payload
            if case .encoded(let bytes) = payload, try !ETF.holdsIdentities(bytes) {
                mapped = payload
            } else {
                let term = try payload.term()
                mapped = .term(bridges.state.withLock { state in mapIdentities(term, toward: target, state: &state, minted: &minted, retired: &retired) })
            }
            for proxy in minted { startProxy(proxy) }
            for proxy in retired { proxy.exit() }
            try await send(mapped, to: destination, from: sender)
        } catch {
            logger.notice("bridge: a message for \(destination) was not forwarded: \(error)")
        }
    }

    func mapIdentities(_ term: Term, toward target: Atom, state: inout Bridges.State, minted: inout [ProcessHandle], retired: inout [ProcessHandle]) -> Term {
        func map(_ term: Term) -> Term {
            switch term {
            case .pid(let pid):
                if pid.node == name.atom {
                    if let original = state.originals[pid.id], original.node == target { return .pid(original) }
                    return term
                }
                if pid.node == target { return term }
                return .pid(proxy(for: pid, state: &state, minted: &minted, retired: &retired))
            case .improperList(let head, .ref(let alias)) where head == [.atom("alias")] && alias.node != target && alias.node != name.atom:
                let stand = makeReference()
                state.tags[stand] = term
                state.tagOrder.append(stand)
                if state.tagOrder.count > bridges.capacity, let oldest = state.tagOrder.popFirst() { state.tags[oldest] = nil }
                return .ref(stand)
            case .ref(let reference) where reference.node == name.atom:
                guard case .improperList(_, .ref(let alias))? = state.tags[reference], alias.node == target else { return term }
                return state.tags.removeValue(forKey: reference)!
            case .tuple(let elements): return .tuple(elements.map(map))
            case .list(let elements): return .list(elements.map(map))
            case .improperList(let elements, let tail): return .improperList(elements.map(map), tail: map(tail))
            case .map(let entries): return .map(entries.map { MapEntry(map($0.key), map($0.value)) })
            default: return term
            }
        }
        return map(term)
    }

    /// The proxy of `pid`, minted on first use (the caller starts it once out of the lock).
    func proxy(for pid: Pid, state: inout Bridges.State, minted: inout [ProcessHandle], retired: inout [ProcessHandle]) -> Pid {
        if let proxy = state.proxies[pid] { return proxy.pid }
        guard let proxy = try? spawn() else { return pid }
        state.proxies[pid] = proxy
        state.originals[proxy.pid.id] = pid
        state.proxyOrder.append((pid, proxy.pid.id))
        minted.append(proxy)
        while state.proxies.count > bridges.capacity, let oldest = state.proxyOrder.popFirst() {
            guard let old = state.proxies[oldest.original], old.pid.id == oldest.proxy else { continue }
            state.proxies[oldest.original] = nil
            state.originals[old.pid.id] = nil
            retired.append(old)
        }
        // Entries of proxies retired otherwise are dropped once they outnumber the live ones.
        if state.proxyOrder.count > 2 * max(state.proxies.count, 1024) {
            let live = state.proxies
            state.proxyOrder.removeAll { live[$0.original]?.pid.id != $0.proxy }
        }
        return proxy.pid
    }

    /// Forwards what the proxy receives to its original, which the proxy monitors: when
    /// it exits (or its connection ends), the proxy is retired.
    func startProxy(_ proxy: ProcessHandle) {
        guard let original = bridges.state.withLock({ $0.originals[proxy.pid.id] }) else { return }
        let monitor = connections.connection(original.node).flatMap { try? sendMonitor(from: proxy.pid, on: .pid(original), over: $0) }
        Task(executorPreference: executor) { [monitor] in
            while let message = try? await proxy.receive() {
                if let monitor, case .term(.tuple(let down)) = message.payload, down.count == 5, down[0] == .atom("DOWN"), down[1] == .ref(monitor) {
                    self.retireProxy(of: original, proxy: proxy)
                    return
                }
                guard self.bridges.state.withLock({ $0.originals[proxy.pid.id] }) != nil else { return }
                await self.forward(message.payload, to: .pid(original), from: proxy.pid)
            }
        }
    }

    /// The original of `proxy` exited: the proxy goes too.
    func retireProxy(of original: Pid, proxy: ProcessHandle) {
        bridges.state.withLock { state in
            guard state.proxies[original] === proxy else { return }
            state.proxies[original] = nil
            state.originals[proxy.pid.id] = nil
        }
        proxy.exit()
        logger.debug("bridge: retired the proxy \(proxy.pid) of \(original), which exited")
    }

    /// The connection to `peer` ended: monitors of the bridges to it fire; when it is
    /// gone for good (`retire`), the proxies of its pids and its reply tags go too.
    func bridgeTargetEnded(_ peer: Atom, retire: Bool) {
        // (The bridges' own monitors on their targets end with a DOWN noconnection each.)
        let ended = bridges.state.withLock { state in state.bridges.values.filter { $0.settings.node.atom == peer }.map(\.handle) }
        for bridge in ended { notifyWatchers(of: bridge, reason: .atom("noconnection")) }
        guard retire else { return }
        let retired = bridges.state.withLock { state -> [ProcessHandle] in
            let gone = state.proxies.filter { $0.key.node == peer }
            for (pid, proxy) in gone {
                state.proxies[pid] = nil
                state.originals[proxy.pid.id] = nil
            }
            state.proxyOrder.removeAll { $0.original.node == peer }
            state.tags = state.tags.filter { if case .improperList(_, .ref(let alias)) = $0.value { alias.node != peer } else { true } }
            let kept = state.tags
            state.tagOrder.removeAll { kept[$0] == nil }
            return Array(gone.values)
        }
        for proxy in retired { proxy.exit() }
    }
}

/// A bridge that cannot be set up as asked.
public struct BridgeError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
