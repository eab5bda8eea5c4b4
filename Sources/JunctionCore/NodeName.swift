import JunctionTerm

/// A node's full name, `alive@host`, checked once so the rest of the code can trust it.
public struct NodeName: Sendable, Comparable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The part before `@`.
    public let alive: String
    /// The part after `@`: a host name or an IP address.
    public let host: String
    /// `alive@host`, built once: names are compared and hashed on every send.
    public let description: String

    public struct Invalid: Error, Sendable, Hashable, CustomStringConvertible {
        public let text: String
        public let reason: String
        public var description: String {
            "invalid node name '\(text)': \(reason); write it as name@host, e.g. gateway@localhost"
        }
    }

    public init(_ text: String) throws(Invalid) {
        let parts = text.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw Invalid(text: text, reason: "there is no '@'") }
        let alive = parts[0]
        let host = parts[1]
        guard !alive.isEmpty, alive.utf8.count <= 255 else { throw Invalid(text: text, reason: "the name before '@' must have 1 to 255 bytes") }
        guard alive.unicodeScalars.allSatisfy({ $0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" }) else {
            throw Invalid(text: text, reason: "the name before '@' may hold letters, digits, '_' and '-' only")
        }
        guard !host.isEmpty, !host.contains("@"), host.unicodeScalars.allSatisfy({ !$0.properties.isWhitespace }) else {
            throw Invalid(text: text, reason: "the host after '@' must be a non-empty host name or address")
        }
        self.alive = String(alive)
        self.host = String(host)
        self.description = text
    }

    /// For literals in code and tests; traps on an invalid name.
    public init(stringLiteral value: String) {
        do { try self.init(value) } catch { preconditionFailure("\(error)") }
    }

    /// The name as the atom that pids and references carry.
    public var atom: Atom { Atom(description) }

    public static func < (lhs: NodeName, rhs: NodeName) -> Bool {
        lhs.description.utf8.lexicographicallyPrecedes(rhs.description.utf8)
    }
}

extension NodeName: Hashable {
    public static func == (lhs: NodeName, rhs: NodeName) -> Bool { lhs.description == rhs.description }
    public func hash(into hasher: inout Hasher) { hasher.combine(description) }
}
