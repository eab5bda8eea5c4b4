import JunctionCore
import JunctionTerm
import Synchronization

/// A message waiting for its connection to finish dialling.
struct PendingMessage: Sendable {
    var destination: Destination
    var sender: Pid
    var streamKey: UInt32
    var payload: Payload
    var size: Int
}

/// The connection a process last sent on (`Node.send`). It stands for the table's
/// entry while the table's generation is the one it was taken at, for up to
/// `ConnectionTable.sendsPerLookup` sends: then a send looks the peer up again, which
/// refreshes the connection's recency for least-recently-used eviction.
struct CachedRoute: Sendable {
    let peer: Atom
    let connection: any PeerConnection
    let generation: UInt64
    var sends: UInt64 = 0

    /// The connection for a send to `peer` while the table is at `generation`, or nil
    /// when the table must be asked.
    mutating func connection(to peer: Atom, generation: UInt64) -> (any PeerConnection)? {
        guard generation == self.generation, sends < ConnectionTable.sendsPerLookup, peer == self.peer else { return nil }
        sends += 1
        return connection
    }
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
        let outcome = DialOutcome()
        /// Redialling a lost connection: senders do not wait, their messages are
        /// retained and go out after the reconnect (or are dropped and counted).
        var retained = false
    }

    enum Entry: Sendable {
        /// A live connection and when a send last used it (for least-recently-used
        /// eviction under the soft connection limit).
        case connected(any PeerConnection, lastUse: UInt64)
        case dialling(Dial)
    }

    /// What `route` decided for one send.
    enum Routing {
        case connection(any PeerConnection)
        /// Queued behind a dial in progress, whose `outcome` tells whether the message
        /// went out; `startDial` is true for the caller that must run the dial.
        case queued(DialOutcome, startDial: Bool)
        /// Retained while a lost connection is redialled.
        case retained
    }

    let entries = Mutex<[Atom: Entry]>([:])
    /// Senders waiting for a connection that refused their message, because it ended
    /// before its end was announced, to leave the table (`waitUntilGone`). Taken inside
    /// `entries`' lock, never the other way round.
    let goneWaiters = Mutex<[ObjectIdentifier: [CheckedContinuation<Void, Never>]]>([:])
    /// Counts sends and installs: the "time" of least-recently-used eviction.
    let useClock = Atomic<UInt64>(0)
    /// Changes whenever a connection enters or leaves the table (under `entries`' lock):
    /// a route cached at an older value may name a connection no longer in use.
    let generation = Atomic<UInt64>(0)
    /// Sends a cached route serves before the table is asked again, and the sends
    /// between two refreshes of an entry's recency.
    static let sendsPerLookup: UInt64 = 64
    let limits: LimitSettings

    init(limits: LimitSettings) { self.limits = limits }

    /// The connection for `peer`, or queues `message` behind the (possibly new) dial.
    func route(_ peer: Atom, message: @autoclosure () -> PendingMessage) throws -> Routing {
        try entries.withLock { (entries) throws(PendingQueueFull) -> Routing in
            switch entries[peer] {
            case .connected(let connection, let lastUse):
                // Recency in sends, refreshed every 64 sends so a busy connection does not
                // rewrite its entry on each one.
                let now = useClock.add(1, ordering: .relaxed).newValue
                if now &- lastUse > Self.sendsPerLookup { entries[peer] = .connected(connection, lastUse: now) }
                return .connection(connection)
            case .dialling(var dial):
                let pending = message()
                guard dial.queue.count < limits.pendingMessages, dial.queuedBytes + pending.size <= limits.pendingBytes else {
                    throw PendingQueueFull(peer: peer.name, limit: "\(limits.pendingMessages) messages, \(limits.pendingBytes) bytes")
                }
                dial.queue.append(pending)
                dial.queuedBytes += pending.size
                entries[peer] = .dialling(dial)
                return dial.retained ? .retained : .queued(dial.outcome, startDial: false)
            case nil:
                let pending = message()
                let dial = Dial(queue: [pending], queuedBytes: pending.size)
                entries[peer] = .dialling(dial)
                return .queued(dial.outcome, startDial: true)
            }
        }
    }

    /// The dials under way: their peers, messages waiting, and whether they redial a lost
    /// connection (retaining) or make a first one.
    func dials() -> [(peer: Atom, queued: Int, retained: Bool)] {
        entries.withLock { entries in
            entries.compactMap { peer, entry in
                guard case .dialling(let dial) = entry else { return nil }
                return (peer, dial.queue.count, dial.retained)
            }
        }
    }

    /// The outcome of the dial to `peer` under way, if any.
    func dialOutcome(_ peer: Atom) -> DialOutcome? {
        entries.withLock { entries in
            if case .dialling(let dial) = entries[peer] { return dial.outcome }
            return nil
        }
    }

    /// Installs an established connection; flushes what waited for it, in order.
    /// Returns the connection it replaced, if any, for the caller to close.
    @discardableResult
    func install(_ connection: any PeerConnection, send: (any PeerConnection, PendingMessage) throws -> Void) -> (any PeerConnection)? {
        let (outcome, replaced, waiters) = entries.withLock { entries -> (DialOutcome?, (any PeerConnection)?, [CheckedContinuation<Void, Never>]) in
            let peer = connection.peer.atom
            generation.add(1, ordering: .releasing)
            switch entries[peer] {
            case .dialling(let dial):
                for message in dial.queue { try? send(connection, message) }
                entries[peer] = .connected(connection, lastUse: useClock.add(1, ordering: .relaxed).newValue)
                return (dial.outcome, nil, [])
            case .connected(let old, _):
                entries[peer] = .connected(connection, lastUse: useClock.add(1, ordering: .relaxed).newValue)
                guard old !== connection else { return (nil, nil, []) }
                return (nil, old, gone(old))
            case nil:
                entries[peer] = .connected(connection, lastUse: useClock.add(1, ordering: .relaxed).newValue)
                return (nil, nil, [])
            }
        }
        outcome?.complete(.success(()))
        for waiter in waiters { waiter.resume() }
        return replaced
    }

    /// Returns once `connection` is no longer the one in use for its peer: its loss or
    /// close was announced, or another replaced it. A sender whose message it refused
    /// waits here, then routes the message again (retained, or on the next connection).
    func waitUntilGone(_ connection: any PeerConnection) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let current = entries.withLock { entries -> Bool in
                guard case .connected(let current, _) = entries[connection.peer.atom], current === connection else { return false }
                goneWaiters.withLock { $0[ObjectIdentifier(connection), default: []].append(continuation) }
                return true
            }
            if !current { continuation.resume() }
        }
    }

    /// The senders waiting for `connection` to leave the table, which it just did (called
    /// under `entries`' lock; they are resumed after it). Moves the generation on, so
    /// no cached route names it any more.
    private func gone(_ connection: any PeerConnection) -> [CheckedContinuation<Void, Never>] {
        generation.add(1, ordering: .releasing)
        return goneWaiters.withLock { $0.removeValue(forKey: ObjectIdentifier(connection)) ?? [] }
    }

    /// `connection` was lost: unless another one replaced it, its peer's messages are
    /// retained from now on while it is redialled. False when it was not the current one.
    func markLost(_ connection: any PeerConnection) -> Bool {
        let waiters = entries.withLock { entries -> [CheckedContinuation<Void, Never>]? in
            let peer = connection.peer.atom
            guard case .connected(let current, _) = entries[peer], current === connection else { return nil }
            var dial = Dial()
            dial.retained = true
            entries[peer] = .dialling(dial)
            return gone(connection)
        }
        for waiter in waiters ?? [] { waiter.resume() }
        return waiters != nil
    }

    /// Whether `peer`'s lost connection is still being redialled (nobody reconnected).
    func isRetaining(_ peer: Atom) -> Bool {
        entries.withLock { entries in
            if case .dialling(let dial) = entries[peer] { return dial.retained }
            return false
        }
    }

    /// Gives up a redial: drops the retained messages and returns how many there were.
    func dropRetained(_ peer: Atom) -> Int {
        entries.withLock { entries in
            guard case .dialling(let dial) = entries[peer], dial.retained else { return 0 }
            entries[peer] = nil
            return dial.queue.count
        }
    }

    /// Ends a failed dial: its queue is dropped and every waiting sender gets `error`.
    func failDial(_ peer: Atom, error: any Error) {
        let outcome = entries.withLock { entries -> DialOutcome? in
            guard case .dialling(let dial) = entries[peer] else { return nil }
            entries[peer] = nil
            return dial.outcome
        }
        outcome?.complete(.failure(error))
    }

    /// Forgets `connection` if it is still the one in use for its peer.
    func remove(_ connection: any PeerConnection) {
        let waiters = entries.withLock { entries -> [CheckedContinuation<Void, Never>] in
            guard case .connected(let current, _) = entries[connection.peer.atom], current === connection else { return [] }
            entries[connection.peer.atom] = nil
            return gone(connection)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Whether a dial to `peer` is under way (for the simultaneous-connect tie-break).
    func isDialling(_ peer: Atom) -> Bool {
        entries.withLock { entries in
            if case .dialling = entries[peer] { return true }
            return false
        }
    }

    func connection(_ peer: Atom) -> (any PeerConnection)? {
        entries.withLock { entries in
            if case .connected(let connection, _) = entries[peer] { return connection }
            return nil
        }
    }

    func all() -> [any PeerConnection] {
        entries.withLock { entries in
            entries.values.compactMap { if case .connected(let connection, _) = $0 { connection } else { nil } }
        }
    }

    /// Connections and dials under way, for the hard connection limit.
    var openCount: Int {
        entries.withLock { entries in entries.values.reduce(0) { count, entry in if case .dialling(let dial) = entry, dial.retained { count } else { count + 1 } } }
    }

    /// Live connections.
    var connectedCount: Int {
        entries.withLock { entries in entries.values.reduce(0) { count, entry in if case .connected = entry { count + 1 } else { count } } }
    }

    /// The live connection a send used least recently, other than `sparing`.
    func leastRecentlyUsed(sparing: Atom) -> (any PeerConnection)? {
        entries.withLock { entries in
            var oldest: (any PeerConnection, UInt64)?
            for (peer, entry) in entries where peer != sparing {
                if case .connected(let connection, let lastUse) = entry, lastUse < (oldest?.1 ?? .max) { oldest = (connection, lastUse) }
            }
            return oldest?.0
        }
    }
}

/// How one dial ended, for every sender whose message waited for it. It keeps the
/// result, so a sender that starts waiting after the end still learns it.
final class DialOutcome: Sendable {
    struct State: ~Copyable {
        var result: Result<Void, any Error>?
        var waiters: [CheckedContinuation<Void, any Error>] = []
    }

    let state = Mutex(State())

    /// Waits for the end of the dial; throws its error.
    func wait() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let result = state.withLock { state -> Result<Void, any Error>? in
                if state.result == nil { state.waiters.append(continuation) }
                return state.result
            }
            if let result { continuation.resume(with: result) }
        }
    }

    func complete(_ result: Result<Void, any Error>) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            guard state.result == nil else { return [] }
            state.result = result
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(with: result) }
    }
}
