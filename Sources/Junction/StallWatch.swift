import NIOCore
import Synchronization

/// Notices a connection that holds its senders back and lets none of them go for
/// `limits.stalledAfter` (`connectionStalled`), and the moment it takes more again
/// (`connectionResumed`).
///
/// Only senders that must wait touch it, so a connection that takes what it is given
/// costs nothing here. While senders wait it checks once per `stalledAfter`: a busy link
/// that keeps letting senders go is never reported, however often they wait, and a
/// stalled one is reported once, not once per check.
final class StallWatch: Sendable {
    /// What is known of one connection whose senders wait.
    struct Watch: Sendable {
        /// Senders waiting now.
        var waiting = 0
        /// Whether a sender was let go since the current check period began.
        var letGoThisPeriod = false
        /// When the current check period began; nil when no check is due.
        var periodStart: NIODeadline?
        /// Since when it has let no sender go, once reported stalled.
        var stalledSince: NIODeadline?
    }

    /// What a check that came due found.
    enum Check: Sendable, Hashable {
        /// A sender waited the whole period and none was let go: report it.
        case stalled(waiting: Int)
        /// Senders still wait: check again one period from now.
        case again
        /// No sender waits any more: no further check.
        case done
    }

    let period: TimeAmount
    let watches = Mutex<[ObjectIdentifier: Watch]>([:])

    init(period: TimeAmount) { self.period = period }

    /// A sender starts to wait on `connection`; true when a check is to be scheduled one
    /// period from `now` (none is due yet).
    func waits(_ connection: ObjectIdentifier, now: NIODeadline) -> Bool {
        watches.withLock { watches in
            var watch = watches[connection, default: Watch()]
            defer { watches[connection] = watch }
            watch.waiting += 1
            guard watch.periodStart == nil else { return false }
            watch.periodStart = now
            watch.letGoThisPeriod = false
            return true
        }
    }

    /// The check scheduled one period after the last one (or the first wait) came due.
    func check(_ connection: ObjectIdentifier, now: NIODeadline) -> Check {
        watches.withLock { watches in
            guard var watch = watches[connection] else { return .done }
            guard watch.waiting > 0 else {
                watches[connection] = nil
                return .done
            }
            // Waiting senders only leave by being let go (or by the connection closing,
            // which forgets it), so none let go means one waited all period.
            let stalled = !watch.letGoThisPeriod && watch.stalledSince == nil
            if stalled { watch.stalledSince = watch.periodStart }
            watch.periodStart = now
            watch.letGoThisPeriod = false
            watches[connection] = watch
            return stalled ? .stalled(waiting: watch.waiting) : .again
        }
    }

    /// A waiting sender was let go (`taken`), or its connection closed. Returns since
    /// when the connection had stalled, if it was reported stalled (it resumed now).
    func letGo(_ connection: ObjectIdentifier, taken: Bool) -> NIODeadline? {
        watches.withLock { watches in
            guard var watch = watches[connection] else { return nil }
            guard taken else {
                // Closed: `connectionLost` or `connectionClosed` tells the rest.
                watches[connection] = nil
                return nil
            }
            watch.waiting -= 1
            watch.letGoThisPeriod = true
            let stalledSince = watch.stalledSince
            watch.stalledSince = nil
            watches[connection] = watch.waiting == 0 && watch.periodStart == nil ? nil : watch
            return stalledSince
        }
    }

    /// Senders waiting on `connection` now, and whether it is reported stalled.
    func state(of connection: ObjectIdentifier) -> (waiting: Int, stalled: Bool) {
        watches.withLock { watches in
            let watch = watches[connection]
            return (watch?.waiting ?? 0, watch?.stalledSince != nil)
        }
    }
}

extension Node {
    /// Waits while `connection` holds the sender back (its outbox is over the high-water
    /// mark, or the socket takes no more), watching for a stall.
    func waitWhileBackedUp(_ connection: any PeerConnection, streamKey: UInt32) async {
        let key = ObjectIdentifier(connection)
        if stalls.waits(key, now: .now()) { scheduleStallCheck(connection) }
        let taken: Bool
        do {
            try await connection.waitUntilWritable(streamKey: streamKey)
            taken = true
        } catch {
            // Closed while waiting: the message is among what the loss reports.
            taken = false
        }
        guard let since = stalls.letGo(key, taken: taken) else { return }
        let event = NetworkEvent.connectionResumed(connection.info, stalledFor: .nanoseconds((NIODeadline.now() - since).nanoseconds))
        status.publish(event)
        logger.notice("\(event)", metadata: ["junction.peer": "\(connection.peer)"])
        metrics.connectionEvent("resumed", stack: connection.stackName)
    }

    func scheduleStallCheck(_ connection: any PeerConnection) {
        let loop = connection.sockets.first?.eventLoop ?? group.next()
        // Held strongly, for one period at most after the connection ends (its waiting
        // senders are let go then, and the check finds nothing to do): a weak reference
        // would give every connection a side table, and each retain and release of it on
        // the send path would take the runtime's slow path.
        loop.scheduleTask(in: stalls.period) { self.checkStall(connection) }
    }

    func checkStall(_ connection: any PeerConnection) {
        switch stalls.check(ObjectIdentifier(connection), now: .now()) {
        case .done:
            return
        case .again:
            break
        case .stalled(let waiting):
            let event = NetworkEvent.connectionStalled(connection.info, waitingSenders: waiting)
            status.publish(event)
            logger.warning(
                "\(event): it took nothing for \(config.limits.stalledAfter), so its peer does not read or its links are down; its senders wait until it takes more (a lost connection reports their messages)",
                metadata: ["junction.peer": "\(connection.peer)"])
            metrics.connectionEvent("stalled", stack: connection.stackName)
        }
        scheduleStallCheck(connection)
    }
}
