/// An IPv4 or IPv6 address, as 4 or 16 bytes.
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// Parses dotted IPv4 (`10.0.0.1`) or IPv6 (`::1`, `fe80::1`, `::ffff:10.0.0.1`).
    public init?(_ text: String) {
        if let v4 = Self.parseIPv4(Substring(text)) {
            bytes = v4
        } else if let v6 = Self.parseIPv6(text) {
            bytes = v6
        } else {
            return nil
        }
    }

    init(bytes: [UInt8]) { self.bytes = bytes }

    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it carries.
    public var unmapped: IPAddress {
        guard bytes.count == 16, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff else { return self }
        return IPAddress(bytes: Array(bytes[12...]))
    }

    public var description: String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        let groups: [UInt16] = stride(from: 0, to: 16, by: 2).map { UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]) }
        // The longest run of zero groups (two or more) becomes "::".
        var best = (start: -1, length: 0)
        var index = 0
        while index < 8 {
            if groups[index] == 0 {
                var end = index
                while end < 8, groups[end] == 0 { end += 1 }
                if end - index > best.length { best = (index, end - index) }
                index = end
            } else {
                index += 1
            }
        }
        let hex = groups.map { String($0, radix: 16) }
        guard best.length >= 2 else { return hex.joined(separator: ":") }
        return hex[..<best.start].joined(separator: ":") + "::" + hex[(best.start + best.length)...].joined(separator: ":")
    }

    static func parseIPv4(_ text: Substring) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy(\.isNumber), let value = UInt8(part) else { return nil }
            out.append(value)
        }
        return out
    }

    static func parseIPv6(_ text: String) -> [UInt8]? {
        guard text.contains(":") else { return nil }
        var tail4: [UInt8] = []
        var body = Substring(text)
        // A trailing dotted IPv4 part (`::ffff:10.0.0.1`).
        if let lastColon = body.lastIndex(of: ":"), body[body.index(after: lastColon)...].contains(".") {
            guard let v4 = parseIPv4(body[body.index(after: lastColon)...]) else { return nil }
            tail4 = v4
            body = body[...lastColon]
            if body.hasSuffix(":"), !body.hasSuffix("::") { body = body.dropLast() }
        }
        let halves = body.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ part: String) -> [UInt16]? {
            if part.isEmpty { return [] }
            var out: [UInt16] = []
            for group in part.split(separator: ":", omittingEmptySubsequences: false) {
                guard !group.isEmpty, group.count <= 4, let value = UInt16(group, radix: 16) else { return nil }
                out.append(value)
            }
            return out
        }
        guard let head = groups(halves[0]) else { return nil }
        let tail = halves.count == 2 ? groups(halves[1]) : []
        guard let tail else { return nil }
        let available = 8 - tail4.count / 2
        var all: [UInt16]
        if halves.count == 2 {
            guard head.count + tail.count < available else { return nil }
            all = head + [UInt16](repeating: 0, count: available - head.count - tail.count) + tail
        } else {
            guard head.count == available else { return nil }
            all = head
        }
        return all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xff)] } + tail4
    }
}

/// An IP network in CIDR form: `10.0.0.0/24`, `fd00::/8`. A bare address is a /32 (/128).
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    public let address: IPAddress
    public let prefix: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let first = parts.first, let address = IPAddress(String(first))?.unmapped else { return nil }
        let maximum = address.bytes.count * 8
        if parts.count == 2 {
            guard let prefix = Int(parts[1]), (0...maximum).contains(prefix) else { return nil }
            self.prefix = prefix
        } else {
            self.prefix = maximum
        }
        // Host bits are cleared, so `10.0.0.7/24` means `10.0.0.0/24`.
        self.address = IPAddress(bytes: Self.masked(address.bytes, prefix: self.prefix))
    }

    public init(_ address: IPAddress) {
        self.address = address.unmapped
        self.prefix = self.address.bytes.count * 8
    }

    static func masked(_ bytes: [UInt8], prefix: Int) -> [UInt8] {
        bytes.enumerated().map { index, byte in
            let bits = max(0, min(8, prefix - index * 8))
            return bits == 8 ? byte : byte & ~(UInt8(0xff) >> bits)
        }
    }

    public func contains(_ candidate: IPAddress) -> Bool {
        let candidate = candidate.unmapped
        guard candidate.bytes.count == address.bytes.count else { return false }
        return Self.masked(candidate.bytes, prefix: prefix) == address.bytes
    }

    public var description: String {
        prefix == address.bytes.count * 8 ? address.description : "\(address)/\(prefix)"
    }
}

/// Block and allow rules (`spec/network-status-port.txt`, "Blocking and Allowing"): IP and
/// IP-network rules apply in the order received into one block list (the last rule that
/// matches an address decides); the system allow-list takes precedence over it;
/// `blockSystem` blocks a node by name and undoes an allow.
public struct AccessRules: Sendable, Hashable {
    public enum IPRule: Sendable, Hashable, CustomStringConvertible {
        case block(IPNetwork)
        case allow(IPNetwork)

        public var description: String {
            switch self {
            case .block(let network): return "block \(network.prefix == network.address.bytes.count * 8 ? "ip" : "net") \(network)"
            case .allow(let network): return "allow \(network.prefix == network.address.bytes.count * 8 ? "ip" : "net") \(network)"
            }
        }
    }

    public enum Decision: Sendable, Hashable {
        case allowed
        /// Blocked, with the rule that decided it.
        case blocked(String)
    }

    public private(set) var ipRules: [IPRule] = []
    public private(set) var allowedSystems: Set<String> = []
    public private(set) var blockedSystems: Set<String> = []

    public init() {}

    public mutating func apply(_ rule: IPRule) {
        ipRules.append(rule)
    }

    public mutating func allowSystem(_ system: String) {
        allowedSystems.insert(system)
        blockedSystems.remove(system)
    }

    public mutating func blockSystem(_ system: String) {
        blockedSystems.insert(system)
        allowedSystems.remove(system)
    }

    /// What the IP rules alone say about `address`.
    public func decision(for address: IPAddress) -> Decision {
        for rule in ipRules.reversed() {
            switch rule {
            case .block(let network) where network.contains(address): return .blocked("\(rule)")
            case .allow(let network) where network.contains(address): return .allowed
            default: continue
            }
        }
        return .allowed
    }

    /// The decision for `system` (a node name, when known) at `address` (when known).
    public func decision(system: String?, address: IPAddress?) -> Decision {
        if let system {
            if allowedSystems.contains(system) { return .allowed }
            if blockedSystems.contains(system) { return .blocked("block system \(system)") }
        }
        guard let address else { return .allowed }
        return decision(for: address)
    }

    /// Whether an address the IP rules block could still be let in by its node name:
    /// only while some system is allowed.
    public var allowListCanOverride: Bool { !allowedSystems.isEmpty }
}
