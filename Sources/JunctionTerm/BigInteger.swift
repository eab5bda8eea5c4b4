/// An integer of any size, stored as Erlang's big-integer encoding stores it: a sign and
/// little-endian magnitude bytes with no trailing zero byte.
public struct BigInteger: Sendable, Hashable, CustomStringConvertible {
    public private(set) var isNegative: Bool
    /// Little-endian magnitude, without high zero bytes; empty for zero.
    public private(set) var magnitude: [UInt8]

    public init(isNegative: Bool, magnitude: [UInt8]) {
        var trimmed = magnitude
        while trimmed.last == 0 { trimmed.removeLast() }
        self.magnitude = trimmed
        self.isNegative = trimmed.isEmpty ? false : isNegative
    }

    public init(_ value: Int) {
        var bytes: [UInt8] = []
        var rest = value.magnitude
        while rest != 0 {
            bytes.append(UInt8(truncatingIfNeeded: rest))
            rest >>= 8
        }
        self.init(isNegative: value < 0, magnitude: bytes)
    }

    /// The value as `Int`, or nil when it does not fit.
    public var asInt: Int? {
        guard magnitude.count <= 8 else { return nil }
        var value: UInt64 = 0
        for (index, byte) in magnitude.enumerated() { value |= UInt64(byte) << (8 * UInt64(index)) }
        if isNegative {
            if value == UInt64(Int.max) + 1 { return Int.min }
            return value <= UInt64(Int.max) ? -Int(value) : nil
        }
        return value <= UInt64(Int.max) ? Int(value) : nil
    }

    /// Parses optional sign and decimal digits; nil for anything else.
    public init?(decimal text: Substring) {
        var digits = text
        var negative = false
        if digits.first == "-" || digits.first == "+" {
            negative = digits.first == "-"
            digits = digits.dropFirst()
        }
        guard !digits.isEmpty else { return nil }
        var bytes: [UInt8] = []
        for character in digits {
            guard let digit = character.wholeNumberValue, character.isASCII else { return nil }
            var carry = digit
            for index in bytes.indices {
                let product = Int(bytes[index]) * 10 + carry
                bytes[index] = UInt8(product & 0xFF)
                carry = product >> 8
            }
            while carry > 0 {
                bytes.append(UInt8(carry & 0xFF))
                carry >>= 8
            }
        }
        self.init(isNegative: negative, magnitude: bytes)
    }

    /// Decimal text, with a leading `-` when negative.
    public var description: String {
        guard !magnitude.isEmpty else { return "0" }
        var work = magnitude
        var digits: [UInt8] = []
        while !work.isEmpty {
            var remainder = 0
            for index in work.indices.reversed() {
                let current = remainder << 8 | Int(work[index])
                work[index] = UInt8(current / 10)
                remainder = current % 10
            }
            digits.append(UInt8(ascii: "0") + UInt8(remainder))
            while work.last == 0 { work.removeLast() }
        }
        if isNegative { digits.append(UInt8(ascii: "-")) }
        return String(decoding: digits.reversed(), as: UTF8.self)
    }
}
