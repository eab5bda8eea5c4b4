import JunctionCore
import JunctionErlang
import JunctionNative
import JunctionTerm
import NIOCore

/// A connection to another node on any stack, as routing and delivery see it.
protocol PeerConnection: AnyObject, Sendable {
    var peer: NodeName { get }
    var stackName: String { get }
    var isOutgoing: Bool { get }
    /// `ip:port` of the connection's socket.
    var remoteAddress: String { get }
    /// Its sockets (the links of a native pool).
    var sockets: [any Channel] { get }
    /// Queues `payload` for `destination`; true when the connection is backed up.
    func send(_ payload: Payload, to destination: Destination, from sender: Pid, streamKey: UInt32) throws -> Bool
    func waitUntilWritable(streamKey: UInt32) async throws
    func close()
    /// Closes at once, dropping what is queued.
    func abort()
    func closeAndWait() async
}

/// A destination a stack cannot carry.
public struct UnsupportedDestination: Error, Sendable, CustomStringConvertible {
    public let description: String
}

extension NativeConnection: PeerConnection {
    var stackName: String { stack }
    var sockets: [any Channel] { channels }
    var isOutgoing: Bool { direction == .outgoing }

    func send(_ payload: Payload, to destination: Destination, from sender: Pid, streamKey: UInt32) throws -> Bool {
        switch destination {
        case .name(let process, _): return try send(toName: process, streamKey: streamKey, payload: payload)
        case .pid(let pid): return try send(toPid: pid, streamKey: streamKey, payload: payload)
        case .alias(let alias):
            throw UnsupportedDestination(description: "the native stack carries no aliases (\(alias)); send to the process's pid")
        }
    }

    func close() { close(deadline: .seconds(5)) }
    func closeAndWait() async { await closeAndWait(deadline: .seconds(5)) }
}

extension ErlangConnection: PeerConnection {
    var stackName: String { stack }
    var sockets: [any Channel] { [channel] }
    var isOutgoing: Bool { direction == .outgoing }

    func send(_ payload: Payload, to destination: Destination, from sender: Pid, streamKey: UInt32) throws -> Bool {
        try send(DistributionMessage(control: Self.control(for: destination, from: sender, flags: negotiated.flags), message: payload))
    }

    /// REG_SEND to a name; SEND_SENDER (or SEND) to a pid; ALIAS_SEND to an alias.
    static func control(for destination: Destination, from sender: Pid, flags: DistributionFlags) throws -> Term {
        switch destination {
        case .name(let process, _):
            return .tuple([.int(6), .pid(sender), .atom(""), .atom(Atom(process))])
        case .pid(let pid):
            if flags.contains(.sendSender) { return .tuple([.int(22), .pid(sender), .pid(pid)]) }
            return .tuple([.int(2), .atom(""), .pid(pid)])
        case .alias(let alias):
            guard flags.contains(.alias) else {
                throw UnsupportedDestination(description: "the peer did not negotiate ALIAS, so \(alias) cannot be sent to")
            }
            return .tuple([.int(33), .pid(sender), .ref(alias)])
        }
    }

    func waitUntilWritable(streamKey: UInt32) async throws { try await waitUntilWritable() }
}
