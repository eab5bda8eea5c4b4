import JunctionCore

/// What a native stack's registrar does for the node: publish where it listens, and
/// answer where other nodes listen. The embedded registrar serves one host; the etcd
/// registrar a cluster of hosts.
public protocol NativeRegistrar: AnyObject, Sendable {
    var stack: String { get }
    /// Publishes `name` as listening on `host:port` and keeps it published until `shutdown`.
    func register(name: NodeName, host: String, port: Int, tls: Bool, handshakeVersion: Int, protocolVersion: Int) async throws
    /// Where `node` listens.
    func resolve(_ node: NodeName) async throws -> ResolvedRoute
    /// Withdraws the registration and stops.
    func shutdown() async
    /// Where it registers and resolves `node`, for logs and `junction routes --resolve`.
    func summary(for node: NodeName?) -> String
}

extension EmbeddedRegistrar: NativeRegistrar {
    public func register(name: NodeName, host: String, port: Int, tls: Bool, handshakeVersion: Int, protocolVersion: Int) async throws {
        try await register(alive: name.alive, port: port, tls: tls, handshakeVersion: handshakeVersion, protocolVersion: protocolVersion)
    }

    public func summary(for node: NodeName?) -> String {
        guard let node else { return "the registrar at \(settings.host):\(settings.port)\(isServer ? " (run by this node)" : "")" }
        return "registrar at \(node.host):\(settings.port) (stack \(stack))"
    }
}
