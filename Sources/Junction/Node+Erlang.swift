import JunctionCore
import JunctionErlang
import JunctionNative
import JunctionTerm
import Logging
import NIOCore
import Synchronization

extension Node: ErlangStackDelegate {
    public func accepts(_ channel: any Channel, stack: ErlangStack) -> Bool {
        acceptsConnection(channel, stack: stack.name)
    }

    public func admit(peer: NodeName, address: SocketAddress?, stack: ErlangStack) -> ErlangHandshake.Admission {
        if let refusal = refusal(of: peer, address: address) { return .notAllowed(refusal) }
        let routeCookie = routes.route(for: peer.description).lazy.compactMap(\.route.cookie).first
        let accepted = routeCookie ?? cookie
        // The greater name's attempt wins, on both sides (`ok_simultaneous` / `nok`).
        if connections.isDialling(peer.atom) {
            return name > peer ? .simultaneous : .acceptSimultaneous(cookie: accepted)
        }
        if let existing = connections.connection(peer.atom), existing.isOutgoing, name > peer {
            return .simultaneous
        }
        return .accept(cookie: accepted)
    }

    public func established(_ connection: ErlangConnection) {
        announceEstablished(connection)
    }

    public func closed(_ connection: ErlangConnection, error: (any Error)?) {
        watchers.forget(peer: connection.peer.atom)
        announceEnded(connection, error: error)
    }

    /// One distribution message from an Erlang node (`spec/erlang-distribution.md` §1.4).
    public func received(_ message: DistributionMessage, on connection: ErlangConnection) throws {
        guard case .tuple(let fields) = message.control, let operation = message.operation else {
            throw DistributionError("\(connection.peer) sent a control message that is not a tuple with an operation: \(message.control)")
        }
        func field(_ index: Int) -> Term? { index < fields.count ? fields[index] : nil }
        let mapping = atomMappings?.mapping(for: connection.peer.atom)
        switch (operation, message.message) {
        case (2, let payload?), (22, let payload?):
            // SEND {2, '', To} / SEND_SENDER {22, From, To}
            guard case .pid(let to)? = field(2) else { throw malformed(message, connection) }
            local(to)?.mailbox.deliver(try mapping?.fromPeer(payload) ?? payload)
        case (6, let payload?):
            // REG_SEND {6, From, '', ToName}
            guard case .atom(let to)? = field(3) else { throw malformed(message, connection) }
            processes.byName(mapping?.localName(to.name) ?? to.name)?.mailbox.deliver(try mapping?.fromPeer(payload) ?? payload)
        case (33, _):
            // ALIAS_SEND: this node mints no aliases, so none can be alive.
            logger.debug("dropped a message from \(connection.peer) to an alias this node never made")
        case (19, nil):
            // MONITOR_P {19, From, ToProc, Ref}; ToProc is a pid or a registered name.
            guard case .pid(let from)? = field(1), let target = field(2), case .ref(let ref)? = field(3) else { throw malformed(message, connection) }
            if let process = process(target), watchers.add(.monitor(ref: ref, target: target), peer: connection.peer.atom, remote: from, to: process, in: processes) {
                bridgeWatched(process)
            } else {
                try sendDown(target: target, to: from, ref: ref, reason: .atom("noproc"), on: connection)
            }
        case (20, nil):
            // DEMONITOR_P {20, From, ToProc, Ref}
            guard case .ref(let ref)? = field(3) else { throw malformed(message, connection) }
            watchers.removeMonitor(ref)
        case (1, nil):
            // LINK {1, From, To}
            guard case .pid(let from)? = field(1), case .pid(let to)? = field(2) else { throw malformed(message, connection) }
            let linked = local(to).map { watchers.add(.link, peer: connection.peer.atom, remote: from, to: $0, in: processes) } ?? false
            if !linked { try sendExit(from: to, to: from, reason: .atom("noproc"), on: connection) }
        case (35, nil), (4, nil):
            // UNLINK_ID {35, Id, From, To} (answered with UNLINK_ID_ACK), old UNLINK {4, From, To}
            let offset = operation == 35 ? 1 : 0
            guard case .pid(let from)? = field(1 + offset), case .pid(let to)? = field(2 + offset) else { throw malformed(message, connection) }
            watchers.removeLink(remote: from, local: to.id)
            if operation == 35, let id = field(1) { try connection.send(DistributionMessage(control: .tuple([.int(36), id, .pid(to), .pid(from)]))) }
        case (36, nil), (7, nil):
            break  // UNLINK_ID_ACK, GROUP_LEADER
        case (3, nil), (8, nil), (24, _), (26, _):
            // EXIT / EXIT2 {3|8, From, To, Reason}; PAYLOAD_EXIT / _EXIT2 {24|26, From, To} + Reason
            guard case .pid(let from)? = field(1), case .pid(let to)? = field(2) else { throw malformed(message, connection) }
            let reason = try field(3) ?? message.message?.term() ?? .atom("normal")
            if operation == 3 || operation == 24 { watchers.removeLink(remote: from, local: to.id) }
            local(to)?.mailbox.deliver(.term(.tuple([.atom("EXIT"), .pid(from), reason])))
        case (21, nil), (28, _):
            // MONITOR_P_EXIT {21, FromProc, ToPid, Ref, Reason}; PAYLOAD_MONITOR_P_EXIT {28, FromProc, ToPid, Ref} + Reason
            guard let object = field(1), case .pid(let to)? = field(2), let ref = field(3) else { throw malformed(message, connection) }
            let reason = try field(4) ?? message.message?.term() ?? .atom("normal")
            // Only for a monitor still in force; it names what was monitored as OTP does.
            guard case .ref(let reference) = ref, let monitor = monitors.ended(reference) else { break }
            _ = object
            local(to)?.mailbox.deliver(.term(.tuple([.atom("DOWN"), ref, .atom("process"), monitor.object, reason])))
        default:
            logger.debug("ignored distribution operation \(operation) from \(connection.peer)")
        }
    }

    func malformed(_ message: DistributionMessage, _ connection: ErlangConnection) -> DistributionError {
        DistributionError("\(connection.peer) sent a malformed control message: \(message.control)")
    }

    /// A process of this incarnation of the node.
    func local(_ pid: Pid) -> ProcessHandle? {
        guard pid.node == name.atom, pid.creation == creation || pid.creation == 0 else { return nil }
        return processes.byId(pid.id)
    }

    /// The process a monitor targets: a pid, or a registered name.
    func process(_ target: Term) -> ProcessHandle? {
        switch target {
        case .pid(let pid): return local(pid)
        case .atom(let atom): return processes.byName(atom.name)
        default: return nil
        }
    }

    /// MONITOR_P_EXIT (or its payload form) for a monitor of `target` held by `watcher`.
    func sendDown(target: Term, to watcher: Pid, ref: Reference, reason: Term, on connection: ErlangConnection) throws {
        if connection.negotiated.flags.contains(.exitPayload) {
            try connection.send(DistributionMessage(control: .tuple([.int(28), target, .pid(watcher), .ref(ref)]), message: .term(reason)))
        } else {
            try connection.send(DistributionMessage(control: .tuple([.int(21), target, .pid(watcher), .ref(ref), reason])))
        }
    }

    /// EXIT (or its payload form) from a linked local process.
    func sendExit(from: Pid, to: Pid, reason: Term, on connection: ErlangConnection) throws {
        if connection.negotiated.flags.contains(.exitPayload) {
            try connection.send(DistributionMessage(control: .tuple([.int(24), .pid(from), .pid(to)]), message: .term(reason)))
        } else {
            try connection.send(DistributionMessage(control: .tuple([.int(3), .pid(from), .pid(to), reason])))
        }
    }

    /// Tells the Erlang processes monitoring or linked to `process` that it exited.
    /// Tells the processes of other nodes monitoring or linked to `process` that it
    /// exited (Erlang peers by DOWN and EXIT messages, native peers by down frames).
    func notifyWatchers(of process: ProcessHandle, reason: Term) {
        for watcher in watchers.take(local: process.pid.id) {
            do {
                switch (watcher.kind, connections.connection(watcher.peer)) {
                case (.monitor(let ref, let target), let connection as ErlangConnection):
                    try sendDown(target: target, to: watcher.remote, ref: ref, reason: reason, on: connection)
                case (.link, let connection as ErlangConnection):
                    try sendExit(from: process.pid, to: watcher.remote, reason: reason, on: connection)
                case (.monitor(let ref, let target), let connection as NativeConnection):
                    let streamKey = Self.streamKey(from: process.pid, to: .pid(watcher.remote))
                    try connection.sendControl(kind: NativeFrameKind.down, streamKey: streamKey, term: .tuple([.ref(ref), .pid(watcher.remote), target, reason]))
                default:
                    continue
                }
            } catch {
                logger.notice("could not tell \(watcher.remote) that \(process.pid) exited: \(error)")
            }
        }
    }

    /// `net_kernel`, so Erlang's `net_adm:ping/1` (a `gen_server` call of
    /// `{is_auth, Node}`) answers `pong`.
    func startNetKernel() throws {
        let kernel = try spawn(name: "net_kernel")
        Task(executorPreference: executor) {
            while let message = try? await kernel.receive() {
                guard let term = try? message.term(), let call = GenCall(term) else { continue }
                let reply: Term
                if case .tuple(let request) = call.request, request.first == .atom("is_auth") {
                    reply = .atom("yes")
                } else {
                    reply = .tuple([.atom("error"), .atom("not_supported")])
                }
                try? await kernel.reply(to: call, with: reply)
            }
        }
    }
}

/// Erlang processes that monitor or link to local processes, so they hear when those
/// exit.
final class Watchers: Sendable {
    enum Kind: Sendable {
        case monitor(ref: Reference, target: Term)
        case link
    }

    struct Watcher: Sendable {
        var kind: Kind
        var peer: Atom
        var remote: Pid
    }

    let byLocal = Mutex<[UInt32: [Watcher]]>([:])

    /// Adds a watcher of `process` while it is still registered, checked under this
    /// table's lock. A process that exits leaves the registry before it takes its
    /// watchers, so a watcher added here is taken by its exit, never left behind. False
    /// when it has gone (the caller answers noproc).
    func add(_ kind: Kind, peer: Atom, remote: Pid, to process: ProcessHandle, in registry: ProcessRegistry) -> Bool {
        byLocal.withLock { table in
            guard registry.byId(process.pid.id) === process else { return false }
            table[process.pid.id, default: []].append(Watcher(kind: kind, peer: peer, remote: remote))
            return true
        }
    }

    func removeMonitor(_ ref: Reference) {
        byLocal.withLock { table in
            for (local, watchers) in table {
                table[local] = watchers.filter { if case .monitor(let other, _) = $0.kind { other != ref } else { true } }
            }
        }
    }

    func removeLink(remote: Pid, local: UInt32) {
        byLocal.withLock { table in
            table[local]?.removeAll { if case .link = $0.kind { $0.remote == remote } else { false } }
        }
    }

    func forget(peer: Atom) {
        byLocal.withLock { table in
            for (local, watchers) in table { table[local] = watchers.filter { $0.peer != peer } }
        }
    }

    func take(local: UInt32) -> [Watcher] {
        byLocal.withLock { $0.removeValue(forKey: local) ?? [] }
    }
}
