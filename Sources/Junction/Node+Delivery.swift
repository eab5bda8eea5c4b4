import JunctionCore
import JunctionNative
import JunctionTerm
import JunctionTransport
import Logging
import NIOCore

extension Node: NativeStackDelegate {
    public func accepts(_ channel: any Channel, stack: NativeStack) -> Bool {
        acceptsConnection(channel, stack: stack.name)
    }

    public func admit(peer: NodeName, address: SocketAddress?, stack: NativeStack) -> NativeHandshake.Admission {
        if let refusal = refusal(of: peer, address: address) { return .reject(.notAllowed, refusal) }
        let routeCookie = routes.route(for: peer.description).lazy.compactMap(\.route.cookie).first
        // One deterministic rule on both sides: the connection dialled by the greater
        // node name survives, so exactly one remains.
        if connections.isDialling(peer.atom), name > peer {
            return .reject(.simultaneous, "\(name) is dialling \(peer) at the same time and wins the tie-break (greater name); use its connection")
        }
        if let existing = connections.connection(peer.atom), existing.isOutgoing, name > peer {
            return .reject(.simultaneous, "\(name) already has a connection it dialled to \(peer), which wins the tie-break (greater name); use it")
        }
        return .accept(cookie: routeCookie ?? cookie)
    }

    public func established(_ connection: NativeConnection) {
        announceEstablished(connection)
    }

    public func joined(_ channel: any Channel, to connection: NativeConnection) {
        socketSettled(channel)
    }

    public func closed(_ connection: NativeConnection, error: (any Error)?) {
        announceEnded(connection, error: error)
    }

    /// Delivers one read's frames into mailboxes, taking the registry lock once per run of
    /// message frames. Monitor frames are handled where they stand, so a monitor, a
    /// demonitor or a DOWN keeps its place among the pair's messages. A malformed frame
    /// or payload throws, which closes that link only.
    public func received(_ frames: [Frame], on connection: NativeConnection) throws {
        let mapping = atomMappings?.mapping(for: connection.peer.atom)
        var next = 0
        while next < frames.count {
            try processes.withLookup { byName, byId in
                // The frames of one read mostly go to one name: it is made a String and
                // looked up once, while the registry's lock is held.
                var lastName: (bytes: ByteBuffer, target: ProcessHandle?)?
                while next < frames.count {
                    var body = frames[next].payload
                    let target: ProcessHandle?
                    switch frames[next].kind {
                    case NativeFrameKind.monitor, NativeFrameKind.demonitor, NativeFrameKind.down:
                        return
                    case NativeFrameKind.sendName:
                        guard let length = body.readInteger(as: UInt8.self), let nameBytes = body.readSlice(length: Int(length)) else {
                            throw NativeProtocolError("a message frame from \(connection.peer) has a malformed name")
                        }
                        if let lastName, lastName.bytes == nameBytes {
                            target = lastName.target
                        } else {
                            let processName = String(buffer: nameBytes)
                            target = byName(mapping?.localName(processName) ?? processName)
                            lastName = (nameBytes, target)
                        }
                    default:
                        guard let (id, _) = body.readMultipleIntegers(as: (UInt32, UInt32).self) else {
                            throw NativeProtocolError("a message frame from \(connection.peer) has a malformed pid")
                        }
                        target = byId(id)
                    }
                    try ETF.validate(body)
                    target?.mailbox.deliver(try mapping?.fromPeer(.encoded(body)) ?? .encoded(body))
                    next += 1
                }
            }
            if next < frames.count {
                // Outside the registry lock, which handling a monitor takes.
                try monitorFrame(frames[next], on: connection)
                next += 1
            }
        }
    }
}
