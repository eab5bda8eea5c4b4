import NIOCore

/// A duration written with a unit in config: `50us`, `250ms`, `5s`, `2m`, `1h`.
public struct ConfigDuration: Sendable, Hashable, Decodable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    public static func seconds(_ value: Int64) -> ConfigDuration { .init(nanoseconds: value * 1_000_000_000) }
    public static func milliseconds(_ value: Int64) -> ConfigDuration { .init(nanoseconds: value * 1_000_000) }
    public static func microseconds(_ value: Int64) -> ConfigDuration { .init(nanoseconds: value * 1_000) }

    public var timeAmount: TimeAmount { .nanoseconds(nanoseconds) }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let parsed = Self.parse(text) else {
            throw invalid(decoder.codingPath, "'\(text)' is not a duration; write a number with a unit: 50us, 250ms, 5s, 2m, 1h")
        }
        self = parsed
    }

    static func parse(_ text: String) -> ConfigDuration? {
        let units: [(String, Int64)] = [("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            guard let number = Int64(text.dropLast(suffix.count)), number >= 0 else { return nil }
            return ConfigDuration(nanoseconds: number * scale)
        }
        return nil
    }

    public var description: String {
        if nanoseconds % 1_000_000_000 == 0 { return "\(nanoseconds / 1_000_000_000)s" }
        if nanoseconds % 1_000_000 == 0 { return "\(nanoseconds / 1_000_000)ms" }
        return "\(nanoseconds / 1_000)us"
    }
}

extension Duration {
    /// The duration in seconds, as a Double (for rates and metrics).
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
