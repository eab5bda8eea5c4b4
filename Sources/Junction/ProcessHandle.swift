import JunctionCore
import JunctionTerm
import Synchronization

/// Where a message goes: a registered name on some node, or a pid.
public enum Destination: Sendable, Hashable, CustomStringConvertible {
    case name(String, on: NodeName)
    case pid(Pid)
    /// A process alias (an Erlang reference that stands for a process), as `gen_server`
    /// calls from Erlang carry in their reply tag.
    case alias(Reference)

    public var description: String {
        switch self {
        case .name(let name, let node): return "\(name) on \(node)"
        case .pid(let pid): return "\(pid)"
        case .alias(let alias): return "alias \(alias)"
        }
    }
}

/// A process hosted by a node: a pid, optionally a registered name, and a mailbox.
public final class ProcessHandle: Sendable {
    public let pid: Pid
    public let name: String?
    let mailbox: Mailbox
    /// Strong: the node holds its processes until they exit or it shuts down, which
    /// ends them all (an unowned reference cost a runtime check on every send).
    let node: Node
    /// The connection of this process's last send to another node (`Node.send`).
    let route = Mutex<CachedRoute?>(nil)
    /// Sends and receives so far. A send that finds room and a receive that finds a
    /// message do not suspend, so a process looping over them would keep its thread of
    /// Swift's cooperative pool (as many threads as cores) and starve everything else
    /// the node runs there (other processes, the admin API, dials). Like an Erlang
    /// process after its reductions, it gives the thread up every `operationsPerSlice` (a
    /// power of two).
    let operations = Atomic<Int>(0)
    static let operationsPerSlice = 1024

    init(pid: Pid, name: String?, node: Node) {
        self.pid = pid
        self.name = name
        self.mailbox = Mailbox()
        self.node = node
    }

    /// Counts one send or receive: true at the end of a slice, when the caller lets
    /// other tasks run. (Synchronous, so the common case costs no async call.)
    @inline(__always)
    func sliceEnded() -> Bool {
        operations.wrappingAdd(1, ordering: .relaxed).newValue & (Self.operationsPerSlice - 1) == 0
    }

    /// Waits for the next message.
    nonisolated(nonsending) public func receive() async throws -> Message {
        guard let payload = await mailbox.next() else {
            try Task.checkCancellation()
            throw ProcessExited(pid: pid)
        }
        if sliceEnded() { await Task.yield() }
        return Message(payload: payload)
    }

    /// Waits for the next message at most `timeout`.
    public func receive(timeout: Duration) async throws -> Message {
        try await withThrowingTaskGroup(of: Message?.self) { group in
            group.addTask { try await self.receive() }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let message = first else { throw ReceiveTimeout(timeout: timeout) }
            return message
        }
    }

    /// Sends `term` from this process.
    nonisolated(nonsending) public func send(_ term: Term, to destination: Destination) async throws {
        try await node.send(.term(term), to: destination, from: pid, sendingProcess: self)
        if sliceEnded() { await Task.yield() }
    }

    /// Unregisters the process and closes its mailbox; Erlang processes monitoring or
    /// linked to it hear `normal`.
    public func exit() {
        end()
        node.notifyWatchers(of: self, reason: .atom("normal"))
    }

    /// Unregisters and closes the mailbox without telling watchers (the node is
    /// stopping: they hear `noconnection` when its connections close, as in OTP).
    func end() {
        node.processes.remove(self)
        mailbox.close()
    }
}

/// The processes of one node, by pid id and by registered name.
final class ProcessRegistry: Sendable {
    struct State: ~Copyable {
        var byId: [UInt32: ProcessHandle] = [:]
        var byName: [String: ProcessHandle] = [:]
        var nextId: UInt32 = 1
    }

    let state = Mutex(State())

    func spawn(name: String?, make: (UInt32) -> ProcessHandle) throws -> ProcessHandle {
        try state.withLock { (state) throws(NameTaken) -> ProcessHandle in
            if let name, state.byName[name] != nil { throw NameTaken(name: name) }
            let process = make(state.nextId)
            state.nextId &+= 1
            state.byId[process.pid.id] = process
            if let name { state.byName[name] = process }
            return process
        }
    }

    func remove(_ process: ProcessHandle) {
        state.withLock { state in
            state.byId[process.pid.id] = nil
            if let name = process.name, state.byName[name] === process { state.byName[name] = nil }
        }
    }

    func byName(_ name: String) -> ProcessHandle? { state.withLock { $0.byName[name] } }
    func byId(_ id: UInt32) -> ProcessHandle? { state.withLock { $0.byId[id] } }

    /// Runs `body` with the lock held once, for delivering a whole batch.
    func withLookup<R>(_ body: (_ byName: (String) -> ProcessHandle?, _ byId: (UInt32) -> ProcessHandle?) throws -> R) rethrows -> R {
        try state.withLock { state in
            try body({ state.byName[$0] }, { state.byId[$0] })
        }
    }

    func all() -> [ProcessHandle] { state.withLock { Array($0.byId.values) } }
}

/// A name that another process already holds.
public struct NameTaken: Error, Sendable, CustomStringConvertible {
    public let name: String
    public var description: String { "a process is already registered as '\(name)' on this node" }
}
