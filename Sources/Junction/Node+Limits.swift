import JunctionCore
import NIOCore

/// A dial refused because the node is at its hard connection limit.
public struct ConnectionLimitReached: Error, Sendable, CustomStringConvertible {
    public let limit: Int
    public var description: String {
        "this node is at its hard limit of \(limit) connections (handshakes and dials included); wait for some to close or raise limits.hardConnections"
    }
}

/// Sockets accepted and still handshaking, and whether each limit is crossed now (so
/// one event goes out per crossing, not one per refused attempt).
struct LimitState: Sendable {
    var handshaking: Set<ObjectIdentifier> = []
    var softReached = false
    var hardReached = false
}

extension Node {
    /// What the hard limit counts: live connections, dials under way and accepted sockets
    /// still handshaking.
    public var connectionLoad: Int {
        connections.openCount + limitState.withLock { $0.handshaking.count }
    }

    /// The hard limit: false (after publishing `hardConnectionLimitReached` once per
    /// crossing) when connections, dials and handshakes already reach it. `counted` is
    /// how many of the dials are the caller's own.
    func belowHardLimit(counted own: Int = 0) -> Bool {
        let limit = config.limits.hardConnections
        let (below, crossed) = limitState.withLock { state -> (Bool, Bool) in
            let count = connections.openCount - own + state.handshaking.count
            guard count >= limit else {
                state.hardReached = false
                return (true, false)
            }
            defer { state.hardReached = true }
            return (false, !state.hardReached)
        }
        if crossed {
            status.publish(.hardConnectionLimitReached(limit: limit))
            logger.warning("hard connection limit of \(limit) reached: new connections are refused until some close")
        }
        return below
    }

    /// Accept-time check of the hard limit; a socket let in counts as handshaking until
    /// its connection is installed or it joins one as a link, until it closes, and at
    /// most two handshake deadlines (by then its handshake timed out).
    func admitsSocket(_ channel: any Channel, handshakeTimeout: TimeAmount) -> Bool {
        guard belowHardLimit() else { return false }
        let id = ObjectIdentifier(channel)
        limitState.withLock { _ = $0.handshaking.insert(id) }
        let done: @Sendable () -> Void = { self.limitState.withLock { _ = $0.handshaking.remove(id) } }
        channel.closeFuture.whenComplete { _ in done() }
        channel.eventLoop.scheduleTask(in: handshakeTimeout * 2) { done() }
        return true
    }

    /// An accepted socket is part of a connection now: it no longer counts as handshaking.
    func socketSettled(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        limitState.withLock { _ = $0.handshaking.remove(id) }
    }

    /// After a connection is installed: its sockets no longer count as handshaking, and
    /// past the soft limit the least recently used connection is closed gracefully
    /// (`softConnectionLimitReached` once per crossing).
    func enforceSoftLimit(after connection: any PeerConnection) {
        let ids = connection.sockets.map(ObjectIdentifier.init)
        limitState.withLock { state in for id in ids { state.handshaking.remove(id) } }
        let limit = config.limits.softConnections
        guard connections.connectedCount > limit, let victim = connections.leastRecentlyUsed(sparing: connection.peer.atom) else { return }
        let first = limitState.withLock { state -> Bool in
            defer { state.softReached = true }
            return !state.softReached
        }
        if first {
            status.publish(.softConnectionLimitReached(limit: limit))
            logger.notice("soft connection limit of \(limit) reached: each new connection closes the least recently used one")
        }
        logger.info("closing the least recently used connection, to \(victim.peer), to stay within \(limit) connections")
        victim.close()
    }

    /// After a connection ended: below the soft limit again, the next crossing is news.
    func noteConnectionEnded() {
        guard connections.connectedCount < config.limits.softConnections else { return }
        limitState.withLock { $0.softReached = false }
    }
}
