import JunctionCore
import JunctionErlang
import JunctionNative
import JunctionTerm
import JunctionTransport
import Synchronization

/// Monitors this node's processes hold on processes of other nodes, so a DOWN is
/// delivered only for a monitor still in force, and a connection that ends can tell them
/// (`noconnection`), as OTP does.
final class OutgoingMonitors: Sendable {
    struct Monitor: Sendable {
        var watcher: Pid
        var destination: Destination
        var peer: Atom {
            switch destination {
            case .name(_, let node): node.atom
            case .pid(let pid): pid.node
            case .alias(let alias): alias.node
            }
        }
        /// What the DOWN message names: the pid, or `{Name, Node}`.
        var object: Term {
            switch destination {
            case .name(let process, let node): .tuple([.atom(Atom(process)), .atom(node.atom)])
            case .pid(let pid): .pid(pid)
            case .alias(let alias): .ref(alias)
            }
        }
        /// What the monitor request names: the pid, or the registered name.
        var target: Term {
            if case .name(let process, _) = destination { return .atom(Atom(process)) }
            return object
        }
    }

    let table = Mutex<[Reference: Monitor]>([:])

    func add(_ reference: Reference, _ monitor: Monitor) { table.withLock { $0[reference] = monitor } }

    /// The monitor fired or was cancelled; nil when it was not (or no longer) in force.
    @discardableResult
    func ended(_ reference: Reference) -> Monitor? { table.withLock { $0.removeValue(forKey: reference) } }

    /// The connection to `peer` ended: every monitor on its processes, taken out.
    func take(peer: Atom) -> [(Reference, Monitor)] {
        table.withLock { table in
            let gone = table.filter { $0.value.peer == peer }
            for reference in gone.keys { table[reference] = nil }
            return gone.map { ($0.key, $0.value) }
        }
    }
}

extension ProcessHandle {
    /// Monitors a process of another node (`erlang:monitor(process, ...)`): when it exits,
    /// or the connection to its node ends, this process receives
    /// `{'DOWN', Ref, process, Object, Reason}` (`noproc` when there is no such process,
    /// `noconnection` when the connection ends). Works over both stacks.
    public func monitor(_ destination: Destination) async throws -> Reference {
        try await node.monitor(destination, from: pid)
    }

    /// Cancels a monitor; no DOWN for it arrives afterwards.
    public func demonitor(_ reference: Reference) throws {
        try node.demonitor(reference, from: pid)
    }
}

extension Node {
    func monitor(_ destination: Destination, from watcher: Pid) async throws -> Reference {
        let peer: NodeName
        switch destination {
        case .name(_, let node): peer = node
        case .pid(let pid): peer = try NodeName(pid.node.name)
        case .alias(let alias): throw UnsupportedDestination(description: "an alias (\(alias)) names no process to monitor")
        }
        guard peer != name else { throw UnsupportedDestination(description: "monitors of this node's own processes are not supported; monitor a process of another node") }
        return try sendMonitor(from: watcher, on: destination, over: try await liveConnection(to: peer))
    }

    /// Asks `connection`'s node to monitor `destination` for `watcher` (MONITOR_P, or a
    /// native monitor frame on the pair's slot), registered so its DOWN is delivered.
    func sendMonitor(from watcher: Pid, on destination: Destination, over connection: any PeerConnection) throws -> Reference {
        let reference = makeReference()
        let monitor = OutgoingMonitors.Monitor(watcher: watcher, destination: destination)
        monitors.add(reference, monitor)
        do {
            switch connection {
            case let erlang as ErlangConnection:
                // MONITOR_P {19, FromPid, ToProc, Ref}
                try erlang.send(DistributionMessage(control: .tuple([.int(19), .pid(watcher), monitor.target, .ref(reference)])))
            case let native as NativeConnection:
                let streamKey = Self.streamKey(from: watcher, to: destination)
                try native.sendControl(kind: NativeFrameKind.monitor, streamKey: streamKey, term: .tuple([.ref(reference), .pid(watcher), monitor.target]))
            default:
                throw UnsupportedDestination(description: "no stack to monitor \(destination) over")
            }
        } catch {
            monitors.ended(reference)
            throw error
        }
        return reference
    }

    /// The connection to `peer`: the live one, the one a dial under way brings, or a new one.
    func liveConnection(to peer: NodeName) async throws -> any PeerConnection {
        if let live = connections.connection(peer.atom) { return live }
        if let dial = connections.dialOutcome(peer.atom) {
            try await dial.wait()
            if let live = connections.connection(peer.atom) { return live }
        }
        return try await connect(peer)
    }

    func demonitor(_ reference: Reference, from watcher: Pid) throws {
        guard let monitor = monitors.ended(reference) else { return }
        switch connections.connection(monitor.peer) {
        case let erlang as ErlangConnection:
            // DEMONITOR_P {20, FromPid, ToProc, Ref}
            try erlang.send(DistributionMessage(control: .tuple([.int(20), .pid(watcher), monitor.target, .ref(reference)])))
        case let native as NativeConnection:
            // On the monitor's slot, so it cannot overtake it.
            let streamKey = Self.streamKey(from: watcher, to: monitor.destination)
            try native.sendControl(kind: NativeFrameKind.demonitor, streamKey: streamKey, term: .tuple([.ref(reference)]))
        default:
            break
        }
    }

    /// A monitor, demonitor or down frame from a native peer.
    func monitorFrame(_ frame: Frame, on connection: NativeConnection) throws {
        let term = try ETF.decode(frame.payload)
        guard case .tuple(let fields) = term, case .ref(let reference)? = fields.first else {
            throw NativeProtocolError("\(connection.peer) sent a malformed monitor frame: \(term)")
        }
        switch (frame.kind, fields.count) {
        case (NativeFrameKind.monitor, 3):
            guard case .pid(let watcher) = fields[1] else { throw NativeProtocolError("\(connection.peer) sent a monitor without a watcher pid") }
            let target = fields[2]
            if let process = process(target), watchers.add(.monitor(ref: reference, target: target), peer: connection.peer.atom, remote: watcher, to: process, in: processes) {
                bridgeWatched(process)
            } else {
                // No such process: DOWN noproc at once (a failure to send it is the
                // connection's, not the peer's input: logged, not thrown).
                let object: Term = if case .atom = target { .tuple([target, .atom(name.atom)]) } else { target }
                do {
                    try connection.sendControl(
                        kind: NativeFrameKind.down, streamKey: 0, term: .tuple([.ref(reference), .pid(watcher), object, .atom("noproc")]))
                } catch {
                    logger.notice("could not tell \(watcher) that \(target) does not exist: \(error)")
                }
            }
        case (NativeFrameKind.demonitor, 1):
            watchers.removeMonitor(reference)
        case (NativeFrameKind.down, 4):
            guard case .pid(let watcher) = fields[1] else { throw NativeProtocolError("\(connection.peer) sent a down without a watcher pid") }
            // A DOWN for a monitor no longer in force (cancelled meanwhile) is dropped.
            guard let monitor = monitors.ended(reference) else { return }
            local(watcher)?.mailbox.deliver(.term(.tuple([.atom("DOWN"), .ref(reference), .atom("process"), monitor.object, fields[3]])))
        default:
            throw NativeProtocolError("\(connection.peer) sent a malformed monitor frame: \(term)")
        }
    }

    /// The connection to `peer` ended: this node's monitors on its processes fire.
    func monitorsEnded(peer: Atom) {
        for (reference, monitor) in monitors.take(peer: peer) {
            local(monitor.watcher)?.mailbox.deliver(.term(.tuple([.atom("DOWN"), .ref(reference), .atom("process"), monitor.object, .atom("noconnection")])))
        }
    }
}
