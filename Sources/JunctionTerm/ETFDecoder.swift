import NIOCore

/// Limits and context for decoding terms from untrusted bytes.
public struct ETFDecodingOptions: Sendable {
    /// Deepest nesting of lists, tuples and maps accepted (guards the stack).
    public var maxDepth: Int = 256
    /// Largest inflated size accepted for a compressed (tag 80) term.
    public var maxUncompressedSize: Int = 64 << 20
    /// Atoms of the distribution header's atom cache, for ATOM_CACHE_REF (tag 82).
    public var atomCache: [Atom?] = []

    public init() {}
}

/// Decodes External Term Format. Every length is checked against the bytes that remain
/// before anything is allocated, and every failure is an `ETFError` naming tag and offset.
/// The decoder reads `bytes` in place: use it inside the closure that lends them.
public struct ETFDecoder {
    let bytes: UnsafeRawBufferPointer
    /// Offset of the next byte to read.
    public private(set) var offset: Int
    let options: ETFDecodingOptions
    /// Pids, references, ports and funs `skipTerm` stepped over (a compressed term
    /// counts as one: what it holds is not looked at without inflating it).
    public private(set) var identities = 0

    public init(bytes: UnsafeRawBufferPointer, offset: Int = 0, options: ETFDecodingOptions = .init()) {
        self.bytes = bytes
        self.offset = offset
        self.options = options
    }

    /// Reads the version byte 131 that starts a standalone term.
    public mutating func readVersion() throws(ETFError) {
        let byte = try u8(tag: 0)
        guard byte == ETFTag.version else { throw ETFError(.badVersion(byte), tag: 0, offset: offset - 1) }
    }

    /// Decodes one term (without a version byte) at the current offset.
    public mutating func decodeTerm() throws(ETFError) -> Term {
        try term(depth: 0)
    }

    /// Steps over one term (without a version byte), checking its structure without
    /// building it.
    public mutating func skipTerm() throws(ETFError) {
        try skip(depth: 0)
    }

    /// Throws unless every byte was consumed.
    public func expectEnd() throws(ETFError) {
        guard offset == bytes.count else {
            throw ETFError(.trailingBytes(count: bytes.count - offset), tag: 0, offset: offset)
        }
    }

    // MARK: - primitives

    var remaining: Int { bytes.count - offset }

    @inline(__always)
    mutating func need(_ count: Int, tag: UInt8) throws(ETFError) {
        guard count <= remaining else {
            throw ETFError(.truncated(needed: count, available: remaining), tag: tag, offset: offset)
        }
    }

    @inline(__always)
    mutating func u8(tag: UInt8) throws(ETFError) -> UInt8 {
        try need(1, tag: tag)
        defer { offset += 1 }
        return bytes[offset]
    }

    @inline(__always)
    mutating func u16(tag: UInt8) throws(ETFError) -> UInt16 {
        try need(2, tag: tag)
        defer { offset += 2 }
        return UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inline(__always)
    mutating func u32(tag: UInt8) throws(ETFError) -> UInt32 {
        try need(4, tag: tag)
        defer { offset += 4 }
        return UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inline(__always)
    mutating func u64(tag: UInt8) throws(ETFError) -> UInt64 {
        try need(8, tag: tag)
        defer { offset += 8 }
        return UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    mutating func raw(_ count: Int, tag: UInt8) throws(ETFError) -> [UInt8] {
        try need(count, tag: tag)
        defer { offset += count }
        return Array(UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count]))
    }

    /// Checks a declared element count against the bytes left: each element takes at
    /// least `minimumBytesEach`.
    func plausible(_ count: Int, minimumBytesEach: Int, tag: UInt8, at start: Int) throws(ETFError) {
        guard count.multipliedReportingOverflow(by: minimumBytesEach).partialValue <= remaining,
            count <= remaining
        else {
            throw ETFError(.lengthExceedsInput(length: count, available: remaining), tag: tag, offset: start)
        }
    }

    // MARK: - decoding

    mutating func term(depth: Int) throws(ETFError) -> Term {
        let start = offset
        let tag = try u8(tag: 0)
        guard depth < options.maxDepth else { throw ETFError(.tooDeep(limit: options.maxDepth), tag: tag, offset: start) }
        switch tag {
        case ETFTag.smallInteger:
            return .int(Int(try u8(tag: tag)))
        case ETFTag.integer:
            return .int(Int(Int32(bitPattern: try u32(tag: tag))))
        case ETFTag.smallBig, ETFTag.largeBig:
            let count = tag == ETFTag.smallBig ? Int(try u8(tag: tag)) : Int(try u32(tag: tag))
            let sign = try u8(tag: tag)
            try plausible(count, minimumBytesEach: 1, tag: tag, at: start)
            return .integer(BigInteger(isNegative: sign != 0, magnitude: try raw(count, tag: tag)))
        case ETFTag.newFloat:
            return .float(Double(bitPattern: try u64(tag: tag)))
        case ETFTag.float:
            let text = try raw(31, tag: tag).prefix { $0 != 0 }
            guard let value = Double(String(decoding: text, as: UTF8.self).trimmingSpaces) else {
                throw ETFError(.notEncodable("FLOAT_EXT text is not a number"), tag: tag, offset: start)
            }
            return .float(value)
        case ETFTag.atomUTF8, ETFTag.smallAtomUTF8, ETFTag.atom, ETFTag.smallAtom, ETFTag.atomCacheRef:
            offset = start
            return .atom(try atom())
        case ETFTag.smallTuple, ETFTag.largeTuple:
            let arity = tag == ETFTag.smallTuple ? Int(try u8(tag: tag)) : Int(try u32(tag: tag))
            try plausible(arity, minimumBytesEach: 1, tag: tag, at: start)
            var elements: [Term] = []
            elements.reserveCapacity(arity)
            for _ in 0..<arity { elements.append(try term(depth: depth + 1)) }
            return .tuple(elements)
        case ETFTag.nil:
            return .list([])
        case ETFTag.string:
            let count = Int(try u16(tag: tag))
            return count == 0 ? .list([]) : .string(try raw(count, tag: tag))
        case ETFTag.list:
            let count = Int(try u32(tag: tag))
            try plausible(count, minimumBytesEach: 1, tag: tag, at: start)
            var elements: [Term] = []
            elements.reserveCapacity(count)
            for _ in 0..<count { elements.append(try term(depth: depth + 1)) }
            let tail = try term(depth: depth + 1)
            if tail == .list([]) { return .canonicalList(elements) }
            return elements.isEmpty ? tail : .improperList(elements, tail: tail)
        case ETFTag.binary:
            let count = Int(try u32(tag: tag))
            try plausible(count, minimumBytesEach: 1, tag: tag, at: start)
            return .binary(try raw(count, tag: tag))
        case ETFTag.bitBinary:
            let count = Int(try u32(tag: tag))
            let bits = try u8(tag: tag)
            guard (1...8).contains(bits), count > 0 else { throw ETFError(.invalidBitCount(bits), tag: tag, offset: start) }
            try plausible(count, minimumBytesEach: 1, tag: tag, at: start)
            return .bitBinary(try raw(count, tag: tag), bits: bits)
        case ETFTag.map:
            let arity = Int(try u32(tag: tag))
            try plausible(arity, minimumBytesEach: 2, tag: tag, at: start)
            var entries: [MapEntry] = []
            entries.reserveCapacity(arity)
            for _ in 0..<arity {
                let key = try term(depth: depth + 1)
                entries.append(MapEntry(key, try term(depth: depth + 1)))
            }
            return .map(entries)
        case ETFTag.newPid, ETFTag.pid:
            let node = try atom()
            let id = try u32(tag: tag)
            let serial = try u32(tag: tag)
            let creation = tag == ETFTag.newPid ? try u32(tag: tag) : UInt32(try u8(tag: tag))
            return .pid(Pid(node: node, id: id, serial: serial, creation: creation))
        case ETFTag.newPort, ETFTag.port, ETFTag.v4Port:
            let node = try atom()
            let id = tag == ETFTag.v4Port ? try u64(tag: tag) : UInt64(try u32(tag: tag))
            let creation = tag == ETFTag.port ? UInt32(try u8(tag: tag)) : try u32(tag: tag)
            return .port(Port(node: node, id: id, creation: creation))
        case ETFTag.newerReference, ETFTag.newReference:
            let words = Int(try u16(tag: tag))
            guard words <= 5 else { throw ETFError(.tooManyReferenceWords(words), tag: tag, offset: start) }
            let node = try atom()
            let creation = tag == ETFTag.newerReference ? try u32(tag: tag) : UInt32(try u8(tag: tag))
            var ids: [UInt32] = []
            for _ in 0..<words { ids.append(try u32(tag: tag)) }
            return .ref(Reference(node: node, creation: creation, ids: ids))
        case ETFTag.reference:
            let node = try atom()
            let id = try u32(tag: tag)
            let creation = UInt32(try u8(tag: tag))
            return .ref(Reference(node: node, creation: creation, ids: [id]))
        case ETFTag.newFun, ETFTag.export, ETFTag.fun:
            offset = start
            try skip(depth: depth)
            return .opaque(tag: tag, bytes: Array(UnsafeRawBufferPointer(rebasing: bytes[start..<offset])))
        case ETFTag.compressed:
            return try inflated(tag: tag, start: start, depth: depth)
        default:
            throw ETFError(.unknownTag, tag: tag, offset: start)
        }
    }

    /// Decodes an atom in any of its encodings, including an atom cache reference.
    public mutating func atom() throws(ETFError) -> Atom {
        let start = offset
        let tag = try u8(tag: 0)
        let count: Int
        let utf8: Bool
        switch tag {
        case ETFTag.smallAtomUTF8: (count, utf8) = (Int(try u8(tag: tag)), true)
        case ETFTag.atomUTF8: (count, utf8) = (Int(try u16(tag: tag)), true)
        case ETFTag.smallAtom: (count, utf8) = (Int(try u8(tag: tag)), false)
        case ETFTag.atom: (count, utf8) = (Int(try u16(tag: tag)), false)
        case ETFTag.atomCacheRef:
            let index = Int(try u8(tag: tag))
            guard index < options.atomCache.count, let cached = options.atomCache[index] else {
                throw ETFError(.atomCacheMissing(index: index), tag: tag, offset: start)
            }
            return cached
        default:
            throw ETFError(.unknownTag, tag: tag, offset: start)
        }
        try need(count, tag: tag)
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count])
        offset += count
        let name: String
        if slice.allSatisfy({ $0 < 0x80 }) {
            // ASCII, the common case, is the same in both encodings; copied as is, it
            // skips the generic validating initializer (a metadata lookup per atom).
            name = String(unsafeUninitializedCapacity: count) { UnsafeMutableRawBufferPointer($0).copyMemory(from: slice); return count }
        } else if utf8 {
            guard let text = String(validating: slice, as: UTF8.self) else {
                throw ETFError(.invalidUTF8, tag: tag, offset: start)
            }
            name = text
        } else {
            name = String(slice.lazy.map { Character(Unicode.Scalar($0)) })
        }
        if count > 255 {
            let characters = name.unicodeScalars.count
            guard characters <= 255 else { throw ETFError(.atomTooLong(characters: characters), tag: tag, offset: start) }
        }
        return Atom(name)
    }

    mutating func inflated(tag: UInt8, start: Int, depth: Int) throws(ETFError) -> Term {
        let declared = Int(try u32(tag: tag))
        guard declared <= options.maxUncompressedSize else {
            throw ETFError(.compressedTooLarge(declared: declared, limit: options.maxUncompressedSize), tag: tag, offset: start)
        }
        let input = UnsafeRawBufferPointer(rebasing: bytes[offset...])
        let result: Zlib.InflateResult
        do {
            result = try Zlib.inflate(input, exactSize: declared)
        } catch {
            switch error {
            case .sizeMismatch(let actual): throw ETFError(.compressedMismatch(declared: declared, actual: actual), tag: tag, offset: start)
            case .library(let message): throw ETFError(.zlib(message), tag: tag, offset: start)
            }
        }
        offset += result.consumed
        let inner = result.output
        let options = options
        return try inner.withUnsafeBytes { inner in
            Result { () throws(ETFError) -> Term in
                var nested = ETFDecoder(bytes: inner, options: options)
                let value = try nested.term(depth: depth + 1)
                try nested.expectEnd()
                return value
            }
        }.get()
    }

    // MARK: - skipping

    mutating func skip(depth: Int) throws(ETFError) {
        let start = offset
        let tag = try u8(tag: 0)
        guard depth < options.maxDepth else { throw ETFError(.tooDeep(limit: options.maxDepth), tag: tag, offset: start) }
        func advance(_ count: Int) throws(ETFError) {
            try need(count, tag: tag)
            offset += count
        }
        switch tag {
        case ETFTag.smallInteger: try advance(1)
        case ETFTag.integer: try advance(4)
        case ETFTag.smallBig: try advance(Int(try u8(tag: tag)) + 1)
        case ETFTag.largeBig: try advance(Int(try u32(tag: tag)) + 1)
        case ETFTag.newFloat: try advance(8)
        case ETFTag.float: try advance(31)
        case ETFTag.atomUTF8, ETFTag.smallAtomUTF8, ETFTag.atom, ETFTag.smallAtom, ETFTag.atomCacheRef:
            offset = start
            _ = try atom()
        case ETFTag.smallTuple, ETFTag.largeTuple:
            let arity = tag == ETFTag.smallTuple ? Int(try u8(tag: tag)) : Int(try u32(tag: tag))
            try plausible(arity, minimumBytesEach: 1, tag: tag, at: start)
            for _ in 0..<arity { try skip(depth: depth + 1) }
        case ETFTag.nil: break
        case ETFTag.string: try advance(Int(try u16(tag: tag)))
        case ETFTag.list:
            let count = Int(try u32(tag: tag))
            try plausible(count, minimumBytesEach: 1, tag: tag, at: start)
            for _ in 0...count { try skip(depth: depth + 1) }
        case ETFTag.binary: try advance(Int(try u32(tag: tag)))
        case ETFTag.bitBinary:
            let count = Int(try u32(tag: tag))
            let bits = try u8(tag: tag)
            guard (1...8).contains(bits), count > 0 else { throw ETFError(.invalidBitCount(bits), tag: tag, offset: start) }
            try advance(count)
        case ETFTag.map:
            let arity = Int(try u32(tag: tag))
            try plausible(arity, minimumBytesEach: 2, tag: tag, at: start)
            for _ in 0..<arity * 2 { try skip(depth: depth + 1) }
        case ETFTag.newPid, ETFTag.pid, ETFTag.newPort, ETFTag.port, ETFTag.v4Port:
            identities += 1
            _ = try atom()
            switch tag {
            case ETFTag.newPid, ETFTag.v4Port: try advance(12)
            case ETFTag.pid: try advance(9)
            case ETFTag.newPort: try advance(8)
            default: try advance(5)
            }
        case ETFTag.newerReference, ETFTag.newReference:
            identities += 1
            let words = Int(try u16(tag: tag))
            guard words <= 5 else { throw ETFError(.tooManyReferenceWords(words), tag: tag, offset: start) }
            _ = try atom()
            try advance((tag == ETFTag.newerReference ? 4 : 1) + 4 * words)
        case ETFTag.reference:
            identities += 1
            _ = try atom()
            try advance(5)
        case ETFTag.newFun:
            identities += 1
            let size = Int(try u32(tag: tag))
            guard size >= 4 else { throw ETFError(.lengthExceedsInput(length: size, available: remaining), tag: tag, offset: start) }
            try advance(size - 4)
        case ETFTag.export:
            for _ in 0..<3 { try skip(depth: depth + 1) }
        case ETFTag.fun:
            identities += 1
            let free = Int(try u32(tag: tag))
            try plausible(free, minimumBytesEach: 1, tag: tag, at: start)
            for _ in 0..<(4 + free) { try skip(depth: depth + 1) }
        case ETFTag.compressed:
            identities += 1
            offset = start
            _ = try term(depth: depth)
        default:
            throw ETFError(.unknownTag, tag: tag, offset: start)
        }
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(self.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
