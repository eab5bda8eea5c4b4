/// `bridges[]` — a process name on this node that forwards every message it gets to
/// `process` on `node`, reached through the routes (on whichever stack they pick). Pids
/// inside the messages are mapped to proxies on the way, so replies come back through
/// this node.
public struct BridgeSettings: Sendable, Hashable, Decodable {
    /// The name the bridge registers on this node.
    public var name: String
    public var node: NodeName
    /// The registered name it forwards to on `node`.
    public var process: String

    enum CodingKeys: String, CodingKey, CaseIterable { case name, node, process }

    public init(name: String, node: NodeName, process: String) {
        self.name = name
        self.node = node
        self.process = process
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        let text = try container.decode(String.self, forKey: .node)
        do { node = try NodeName(text) } catch { throw invalid(decoder.codingPath + [CodingKeys.node], error.description) }
        process = try container.value(.process, default: name)
        for (key, value) in [(CodingKeys.name, name), (.process, process)] where !(1...255).contains(value.utf8.count) {
            throw invalid(decoder.codingPath + [key], "a process name has 1 to 255 bytes, not \(value.utf8.count)")
        }
    }
}
