import Logging

/// How to reach the nodes a static route matches: which resolver to ask, or an explicit
/// address, plus the settings that override the resolver's answer and the node defaults
/// for those connections (`spec/static-routes.txt`, `gen.NetworkRoute`).
public struct NetworkRoute: Sendable, Hashable {
    /// The stack whose registrar resolves the name; nil with an explicit route only
    /// (an explicit route then goes through `explicit.stack`).
    public var resolver: String?
    /// Fields set here win over what the resolver returns.
    public var explicit: ExplicitRoute?
    /// Cookie for these connections instead of the node's.
    public var cookie: Secret?
    /// Flag overrides for these connections.
    public var flags: FlagOverrides
    /// Atoms renamed on the wire for these connections: local name -> remote name.
    public var atomMapping: [String: String]
    /// Log level of these connections' logger.
    public var logLevel: Logger.Level?
    /// Certificate (PEM path) presented when dialling with TLS.
    public var certificate: CertificateFiles?
    /// Compression for these connections instead of the stack's.
    public var compression: CompressionSettings?

    public init(
        resolver: String? = nil, explicit: ExplicitRoute? = nil, cookie: Secret? = nil, flags: FlagOverrides = .init(),
        atomMapping: [String: String] = [:], logLevel: Logger.Level? = nil, certificate: CertificateFiles? = nil, compression: CompressionSettings? = nil
    ) {
        self.resolver = resolver
        self.explicit = explicit
        self.cookie = cookie
        self.flags = flags
        self.atomMapping = atomMapping
        self.logLevel = logLevel
        self.certificate = certificate
        self.compression = compression
    }

    /// Human-readable list of the settings this route overrides, for `junction routes`.
    public var overrideSummary: [String] {
        var parts: [String] = []
        if cookie != nil { parts.append("cookie") }
        parts += flags.summary
        if !atomMapping.isEmpty {
            parts.append("atoms " + atomMapping.sorted { $0.key < $1.key }.map { "\($0.key)->\($0.value)" }.joined(separator: ","))
        }
        if let logLevel { parts.append("log \(logLevel)") }
        if let certificate { parts.append("certificate \(certificate)") }
        if let compression {
            parts.append(compression.enabled ? "compression \(compression.mode.rawValue) level \(compression.level) over \(compression.threshold) bytes" : "compression off")
        }
        return parts
    }
}

/// Address fields of a route. In an explicit route every field that is set overrides
/// what a resolver returned; host and port are required when there is no resolver.
public struct ExplicitRoute: Sendable, Hashable {
    public var stack: String?
    public var host: String?
    public var port: Int?
    public var tls: Bool?
    public var handshakeVersion: Int?
    public var protocolVersion: Int?

    public init(stack: String? = nil, host: String? = nil, port: Int? = nil, tls: Bool? = nil, handshakeVersion: Int? = nil, protocolVersion: Int? = nil) {
        self.stack = stack
        self.host = host
        self.port = port
        self.tls = tls
        self.handshakeVersion = handshakeVersion
        self.protocolVersion = protocolVersion
    }
}

/// Per-route flag overrides; nil keeps the stack's setting.
public struct FlagOverrides: Sendable, Hashable {
    public var remoteSpawn: Bool?
    public var compression: Bool?
    public var maxMessageSize: Int?

    public init(remoteSpawn: Bool? = nil, compression: Bool? = nil, maxMessageSize: Int? = nil) {
        self.remoteSpawn = remoteSpawn
        self.compression = compression
        self.maxMessageSize = maxMessageSize
    }

    var summary: [String] {
        var parts: [String] = []
        if let remoteSpawn { parts.append("remote spawn \(remoteSpawn ? "on" : "off")") }
        if let compression { parts.append("compression \(compression ? "on" : "off")") }
        if let maxMessageSize { parts.append("max message \(maxMessageSize) bytes") }
        return parts
    }
}

/// A secret such as a cookie: compares and hashes by value but never prints.
public struct Secret: Sendable, Hashable, CustomStringConvertible {
    public let value: String
    public init(_ value: String) { self.value = value }
    public var description: String { "<secret>" }
}

/// Where a resolver says a node listens, after the static route's settings were merged in.
public struct ResolvedRoute: Sendable, Hashable, CustomStringConvertible {
    public var stack: String
    public var host: String
    public var port: Int
    public var tls: Bool
    public var handshakeVersion: Int
    public var protocolVersion: Int

    public init(stack: String, host: String, port: Int, tls: Bool = false, handshakeVersion: Int, protocolVersion: Int) {
        self.stack = stack
        self.host = host
        self.port = port
        self.tls = tls
        self.handshakeVersion = handshakeVersion
        self.protocolVersion = protocolVersion
    }

    /// This route with every field the explicit route sets taking its place.
    public func merged(with explicit: ExplicitRoute?) -> ResolvedRoute {
        guard let explicit else { return self }
        var route = self
        if let value = explicit.stack { route.stack = value }
        if let value = explicit.host { route.host = value }
        if let value = explicit.port { route.port = value }
        if let value = explicit.tls { route.tls = value }
        if let value = explicit.handshakeVersion { route.handshakeVersion = value }
        if let value = explicit.protocolVersion { route.protocolVersion = value }
        return route
    }

    public var description: String {
        "\(stack) \(host):\(port)\(tls ? " tls" : "") handshake v\(handshakeVersion) protocol v\(protocolVersion)"
    }
}
