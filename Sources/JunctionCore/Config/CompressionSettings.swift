/// How a link direction compresses frame payloads (DESIGN.md "Compression"); the
/// `compression` key of a stack.
public struct CompressionSettings: Sendable, Hashable, Decodable {
    public enum Mode: String, Sendable, Hashable, CaseIterable {
        /// One deflate context per link direction with a sync flush per frame, so similar
        /// messages share the window.
        case stream
        /// Every payload compressed on its own (the context is reset, not recreated).
        case message
    }

    /// Offer compression in the handshake; frames are compressed only when both sides do.
    public var enabled: Bool
    /// zlib level, 1 (fastest) ... 9 (smallest).
    public var level: Int32
    /// Payloads of at most this many bytes go uncompressed.
    public var threshold: Int
    public var mode: Mode

    enum CodingKeys: String, CodingKey, CaseIterable { case enabled, level, threshold, mode }

    public init(enabled: Bool = true, level: Int32 = 1, threshold: Int = 1024, mode: Mode = .stream) {
        self.enabled = enabled
        self.level = level
        self.threshold = threshold
        self.mode = mode
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        enabled = try container.value(.enabled, default: true)
        level = try container.value(.level, default: 1)
        threshold = try container.value(.threshold, default: 1024)
        let modeText = try container.value(.mode, default: "stream")
        guard let mode = Mode(rawValue: modeText) else {
            throw invalid(decoder.codingPath + [CodingKeys.mode], "unknown compression mode '\(modeText)'; use stream or message")
        }
        self.mode = mode
        guard (1...9).contains(level) else { throw invalid(decoder.codingPath + [CodingKeys.level], "zlib level must be 1...9, not \(level)") }
        guard threshold >= 0 else { throw invalid(decoder.codingPath + [CodingKeys.threshold], "must be 0 or more bytes") }
    }
}
