extension JunctionConfig {
    /// The routes tried for `peer`, one line each, as `junction routes NODE` and the
    /// config checker print them: static matches in trial order with their overrides, then
    /// the default resolver when it would be used.
    public func explainRoutes(for peer: NodeName, table: RouteTable) -> [String] {
        let matches = table.route(for: peer.description)
        var lines: [String] = []
        for (index, entry) in matches.enumerated() {
            var target: String
            if let resolver = entry.route.resolver {
                target = "resolver \(resolver)"
                if let explicit = entry.route.explicit { target += " with " + explicit.summary }
            } else {
                target = "explicit " + (entry.route.explicit?.summary ?? "")
            }
            let overrides = entry.route.overrideSummary
            lines.append("\(index + 1). '\(entry.match)' weight \(entry.weight): \(target)\(overrides.isEmpty ? "" : "; overrides: " + overrides.joined(separator: ", "))")
        }
        if matches.isEmpty {
            lines.append("1. no static route matches: default resolver (stack \(defaultStack.name))")
        } else if node.fallbackToDefaultResolver {
            lines.append("\(matches.count + 1). fallback: default resolver (stack \(defaultStack.name))")
        }
        return lines
    }
}

extension ExplicitRoute {
    public var summary: String {
        var parts: [String] = []
        if let host, let port { parts.append("\(host):\(port)") } else if let host { parts.append("host \(host)") } else if let port { parts.append("port \(port)") }
        if let stack { parts.append("stack \(stack)") }
        if let tls { parts.append(tls ? "tls" : "no tls") }
        if let handshakeVersion { parts.append("handshake v\(handshakeVersion)") }
        if let protocolVersion { parts.append("protocol v\(protocolVersion)") }
        return parts.joined(separator: " ")
    }
}
