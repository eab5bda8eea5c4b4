/// Why a byte sequence is not a valid External Term Format term. Every case says which
/// tag was being read and at which byte offset, so a bad peer can be reported precisely.
public struct ETFError: Error, Sendable, Hashable, CustomStringConvertible {
    enum Kind: Sendable, Hashable {
        case truncated(needed: Int, available: Int)
        case unknownTag
        case badVersion(UInt8)
        case tooDeep(limit: Int)
        case lengthExceedsInput(length: Int, available: Int)
        case invalidUTF8
        case atomTooLong(characters: Int)
        case invalidBitCount(UInt8)
        case tooManyReferenceWords(Int)
        case compressedTooLarge(declared: Int, limit: Int)
        case compressedMismatch(declared: Int, actual: String)
        case zlib(String)
        case atomCacheMissing(index: Int)
        case trailingBytes(count: Int)
        case notEncodable(String)
    }

    let kind: Kind
    /// The tag being decoded (0 when the error is not about one tag).
    public let tag: UInt8
    /// The byte offset in the input where the problem was found.
    public let offset: Int

    init(_ kind: Kind, tag: UInt8, offset: Int) {
        self.kind = kind
        self.tag = tag
        self.offset = offset
    }

    public var description: String {
        let place = "tag \(tag) at offset \(offset)"
        switch kind {
        case .truncated(let needed, let available):
            return "ETF term truncated: \(place) needs \(needed) more bytes, \(available) left"
        case .unknownTag:
            return "ETF: unknown tag \(tag) at offset \(offset)"
        case .badVersion(let byte):
            return "ETF: expected version byte 131 at offset \(offset), found \(byte)"
        case .tooDeep(let limit):
            return "ETF: term nested deeper than \(limit) levels at \(place)"
        case .lengthExceedsInput(let length, let available):
            return "ETF: \(place) declares \(length) elements/bytes but only \(available) bytes remain"
        case .invalidUTF8:
            return "ETF: atom at \(place) is not valid UTF-8"
        case .atomTooLong(let characters):
            return "ETF: atom at \(place) has \(characters) characters (at most 255 allowed)"
        case .invalidBitCount(let bits):
            return "ETF: bit binary at \(place) has \(bits) bits in its last byte (1...8 allowed)"
        case .tooManyReferenceWords(let words):
            return "ETF: reference at \(place) has \(words) words (at most 5 allowed)"
        case .compressedTooLarge(let declared, let limit):
            return "ETF: compressed term at \(place) declares \(declared) bytes, above the limit of \(limit)"
        case .compressedMismatch(let declared, let actual):
            return "ETF: compressed term at \(place) declares \(declared) bytes but inflates to \(actual)"
        case .zlib(let message):
            return "ETF: compressed term at \(place) is not valid zlib data: \(message)"
        case .atomCacheMissing(let index):
            return "ETF: atom cache reference \(index) at offset \(offset) names no cached atom"
        case .trailingBytes(let count):
            return "ETF: \(count) unexpected bytes after the term at offset \(offset)"
        case .notEncodable(let why):
            return "ETF: cannot encode: \(why)"
        }
    }
}
