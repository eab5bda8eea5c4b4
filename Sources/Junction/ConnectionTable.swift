import JunctionCore
import JunctionNative
import JunctionTerm
import Synchronization

/// A message waiting for its connection to finish dialling.
struct PendingMessage: Sendable {
    var destination: Destination
    var streamKey: UInt32
    var payload: Payload
    var size: Int
}

/// All sends to one node failed because no route connected.
public struct DialError: Error, Sendable, CustomStringConvertible {
    public let peer: String
    /// One line per candidate route that was tried, in order.
    public let attempts: [String]

    public var description: String {
        "cannot connect to \(peer); tried:\n" + attempts.map { "  - \($0)" }.joined(separator: "\n")
    }
}

/// The pending-queue bound was reached while a node was being dialled.
public struct PendingQueueFull: Error, Sendable, CustomStringConvertible {
    public let peer: String
    public let limit: String
    public var description: String {
        "the queue of messages waiting for the connection to \(peer) is full (\(limit)); raise limits.pendingMessages/pendingBytes or send slower"
    }
}

/// Connections by peer node, with the dial in progress for peers not yet connected.
/// Concurrent sends to a node that is still connecting share one dial; their messages
/// wait in a bounded queue and go out in order once connected.
final class ConnectionTable: Sendable {
    struct Dial: Sendable {
        var queue: [PendingMessage] = []
        var queuedBytes = 0
        var waiters: [CheckedContinuation<Void, any Error>] = []
    }

    enum Entry: Sendable {
        case connected(NativeConnection)
        case dialling(Dial)
    }

    /// What `route` decided for one send.
    enum Routing {
        case connection(NativeConnection)
        /// Queued behind a dial in progress; `startDial` is true for the caller that must run it.
        case queued(startDial: Bool)
    }

    let entries = Mutex<[Atom: Entry]>([:])
    let limits: LimitSettings

    init(limits: LimitSettings) { self.limits = limits }

    /// The connection for `peer`, or queues `message` behind the (possibly new) dial.
    func route(_ peer: Atom, message: @autoclosure () -> PendingMessage) throws -> Routing {
        try entries.withLock { (entries) throws(PendingQueueFull) -> Routing in
            switch entries[peer] {
            case .connected(let connection):
                return .connection(connection)
            case .dialling(var dial):
                let pending = message()
                guard dial.queue.count < limits.pendingMessages, dial.queuedBytes + pending.size <= limits.pendingBytes else {
                    throw PendingQueueFull(peer: peer.name, limit: "\(limits.pendingMessages) messages, \(limits.pendingBytes) bytes")
                }
                dial.queue.append(pending)
                dial.queuedBytes += pending.size
                entries[peer] = .dialling(dial)
                return .queued(startDial: false)
            case nil:
                let pending = message()
                entries[peer] = .dialling(Dial(queue: [pending], queuedBytes: pending.size))
                return .queued(startDial: true)
            }
        }
    }

    /// Suspends until the dial for `peer` ends; throws its error.
    func awaitDial(_ peer: Atom) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let done = entries.withLock { entries -> Bool in
                guard case .dialling(var dial) = entries[peer] else { return true }
                dial.waiters.append(continuation)
                entries[peer] = .dialling(dial)
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Installs an established connection; flushes what waited for it, in order.
    /// Returns the connection it replaced, if any, for the caller to close.
    @discardableResult
    func install(_ connection: NativeConnection, send: (NativeConnection, PendingMessage) throws -> Void) -> NativeConnection? {
        let (waiters, replaced) = entries.withLock { entries -> ([CheckedContinuation<Void, any Error>], NativeConnection?) in
            let peer = connection.peer.atom
            switch entries[peer] {
            case .dialling(let dial):
                for message in dial.queue { try? send(connection, message) }
                entries[peer] = .connected(connection)
                return (dial.waiters, nil)
            case .connected(let old):
                entries[peer] = .connected(connection)
                return ([], old === connection ? nil : old)
            case nil:
                entries[peer] = .connected(connection)
                return ([], nil)
            }
        }
        for waiter in waiters { waiter.resume() }
        return replaced
    }

    /// Ends a failed dial: its queue is dropped and every waiting sender gets `error`.
    func failDial(_ peer: Atom, error: any Error) {
        let waiters = entries.withLock { entries -> [CheckedContinuation<Void, any Error>] in
            guard case .dialling(let dial) = entries[peer] else { return [] }
            entries[peer] = nil
            return dial.waiters
        }
        for waiter in waiters { waiter.resume(throwing: error) }
    }

    /// Forgets `connection` if it is still the one in use for its peer.
    func remove(_ connection: NativeConnection) {
        entries.withLock { entries in
            if case .connected(let current) = entries[connection.peer.atom], current === connection {
                entries[connection.peer.atom] = nil
            }
        }
    }

    /// Whether a dial to `peer` is under way (for the simultaneous-connect tie-break).
    func isDialling(_ peer: Atom) -> Bool {
        entries.withLock { entries in
            if case .dialling = entries[peer] { return true }
            return false
        }
    }

    func connection(_ peer: Atom) -> NativeConnection? {
        entries.withLock { entries in
            if case .connected(let connection) = entries[peer] { return connection }
            return nil
        }
    }

    func all() -> [NativeConnection] {
        entries.withLock { entries in
            entries.values.compactMap { if case .connected(let connection) = $0 { connection } else { nil } }
        }
    }
}
