import NIOCore

/// Encodes terms in External Term Format, choosing the forms OTP 25+ sends: UTF-8 atoms,
/// NEW_FLOAT_EXT, NEW_PID_EXT, NEWER_REFERENCE_EXT, STRING_EXT for byte lists.
///
/// Two passes: the first sizes the term and checks that it can be encoded, the second
/// writes it with raw stores into space reserved once, so a small term costs one
/// capacity check rather than one per field (PERFORMANCE.md).
public enum ETFEncoder {
    /// Appends the term, after the version byte when `versioned`.
    public static func write(_ term: Term, into buffer: inout ByteBuffer, versioned: Bool = false) throws(ETFError) {
        let size = try encodedSize(term) + (versioned ? 1 : 0)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { raw in
            var writer = RawWriter(base: raw.baseAddress!)
            if versioned { writer.u8(ETFTag.version) }
            writer.term(term)
            precondition(writer.offset == size, "ETF size pass and write pass disagree for \(term)")
            return writer.offset
        }
    }

    /// Bytes the term takes without the version byte; throws for a term that has no
    /// encoding (an atom over 255 characters, a reference of more than 5 words, ...).
    public static func encodedSize(_ term: Term) throws(ETFError) -> Int {
        switch term {
        case .atom(let atom): return try size(of: atom)
        case .int(let value):
            if (0...255).contains(value) { return 2 }
            if Int32(exactly: value) != nil { return 5 }
            return 3 + BigInteger(value).magnitude.count
        case .bigInt(let value): return (value.magnitude.count <= 255 ? 3 : 6) + value.magnitude.count
        case .float: return 9
        case .string(let bytes): return bytes.count <= Int(UInt16.max) ? 3 + bytes.count : 6 + 2 * bytes.count
        case .binary(let bytes):
            try checkLength(bytes.count, "binary")
            return 5 + bytes.count
        case .bitBinary(let bytes, let bits):
            guard !bytes.isEmpty, (1...8).contains(bits) else {
                throw ETFError(.notEncodable("a bit binary needs at least one byte and 1...8 bits in its last"), tag: ETFTag.bitBinary, offset: 0)
            }
            try checkLength(bytes.count, "bit binary")
            return 6 + bytes.count
        case .list(let elements):
            guard !elements.isEmpty else { return 1 }
            try checkLength(elements.count, "list")
            var total = 6
            for element in elements { total += try encodedSize(element) }
            return total
        case .improperList(let elements, let tail):
            try checkLength(elements.count, "list")
            var total = 5 + (try encodedSize(tail))
            for element in elements { total += try encodedSize(element) }
            return total
        case .tuple(let elements):
            try checkLength(elements.count, "tuple")
            var total = elements.count <= 255 ? 2 : 5
            for element in elements { total += try encodedSize(element) }
            return total
        case .map(let entries):
            try checkLength(entries.count, "map")
            var total = 5
            for entry in entries { total += try encodedSize(entry.key) + encodedSize(entry.value) }
            return total
        case .pid(let pid): return 13 + (try size(of: pid.node))
        case .ref(let reference):
            guard (1...5).contains(reference.ids.count) else {
                throw ETFError(.notEncodable("a reference has 1...5 words, not \(reference.ids.count)"), tag: ETFTag.newerReference, offset: 0)
            }
            return 7 + (try size(of: reference.node)) + 4 * reference.ids.count
        case .port(let port): return (UInt32(exactly: port.id) != nil ? 9 : 13) + (try size(of: port.node))
        case .opaque(_, let bytes): return bytes.count
        }
    }

    static func size(of atom: Atom) throws(ETFError) -> Int {
        let count = atom.name.utf8.count
        if count <= 255 { return 2 + count }
        let characters = atom.name.unicodeScalars.count
        guard characters <= 255 else { throw ETFError(.atomTooLong(characters: characters), tag: ETFTag.atomUTF8, offset: 0) }
        return 3 + count
    }

    static func checkLength(_ count: Int, _ what: String) throws(ETFError) {
        guard count <= Int(UInt32.max) else {
            throw ETFError(.notEncodable("a \(what) of \(count) elements exceeds 2^32-1"), tag: 0, offset: 0)
        }
    }
}

/// Raw big-endian stores into space `ETFEncoder.encodedSize` reserved.
struct RawWriter {
    let base: UnsafeMutableRawPointer
    var offset = 0

    init(base: UnsafeMutableRawPointer) { self.base = base }

    @inline(__always) mutating func u8(_ value: UInt8) {
        base.storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
        offset += 1
    }

    @inline(__always) mutating func u16(_ value: UInt16) {
        base.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
        offset += 2
    }

    @inline(__always) mutating func u32(_ value: UInt32) {
        base.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
        offset += 4
    }

    @inline(__always) mutating func u64(_ value: UInt64) {
        base.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt64.self)
        offset += 8
    }

    @inline(__always) mutating func bytes(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { source in
            if let address = source.baseAddress { (base + offset).copyMemory(from: address, byteCount: source.count) }
        }
        offset += bytes.count
    }

    mutating func atom(_ atom: Atom) {
        var name = atom.name
        let count = name.utf8.count
        if count <= 255 {
            u8(ETFTag.smallAtomUTF8)
            u8(UInt8(count))
        } else {
            u8(ETFTag.atomUTF8)
            u16(UInt16(count))
        }
        name.withUTF8 { utf8 in
            if let address = utf8.baseAddress { (base + offset).copyMemory(from: address, byteCount: utf8.count) }
        }
        offset += count
    }

    mutating func big(_ value: BigInteger) {
        let digits = value.magnitude
        if digits.count <= 255 {
            u8(ETFTag.smallBig)
            u8(UInt8(digits.count))
        } else {
            u8(ETFTag.largeBig)
            u32(UInt32(digits.count))
        }
        u8(value.isNegative ? 1 : 0)
        bytes(digits)
    }

    mutating func term(_ term: Term) {
        switch term {
        case .atom(let atom):
            self.atom(atom)
        case .int(let value):
            if (0...255).contains(value) {
                u8(ETFTag.smallInteger)
                u8(UInt8(value))
            } else if let small = Int32(exactly: value) {
                u8(ETFTag.integer)
                u32(UInt32(bitPattern: small))
            } else {
                big(BigInteger(value))
            }
        case .bigInt(let value):
            big(value)
        case .float(let value):
            u8(ETFTag.newFloat)
            u64(value.bitPattern)
        case .string(let bytes):
            if bytes.count <= Int(UInt16.max) {
                u8(ETFTag.string)
                u16(UInt16(bytes.count))
                self.bytes(bytes)
            } else {
                u8(ETFTag.list)
                u32(UInt32(bytes.count))
                for byte in bytes {
                    u8(ETFTag.smallInteger)
                    u8(byte)
                }
                u8(ETFTag.nil)
            }
        case .binary(let bytes):
            u8(ETFTag.binary)
            u32(UInt32(bytes.count))
            self.bytes(bytes)
        case .bitBinary(let bytes, let bits):
            u8(ETFTag.bitBinary)
            u32(UInt32(bytes.count))
            u8(bits)
            self.bytes(bytes)
        case .list(let elements):
            guard !elements.isEmpty else {
                u8(ETFTag.nil)
                return
            }
            u8(ETFTag.list)
            u32(UInt32(elements.count))
            for element in elements { self.term(element) }
            u8(ETFTag.nil)
        case .improperList(let elements, let tail):
            u8(ETFTag.list)
            u32(UInt32(elements.count))
            for element in elements { self.term(element) }
            self.term(tail)
        case .tuple(let elements):
            if elements.count <= 255 {
                u8(ETFTag.smallTuple)
                u8(UInt8(elements.count))
            } else {
                u8(ETFTag.largeTuple)
                u32(UInt32(elements.count))
            }
            for element in elements { self.term(element) }
        case .map(let entries):
            u8(ETFTag.map)
            u32(UInt32(entries.count))
            for entry in entries {
                self.term(entry.key)
                self.term(entry.value)
            }
        case .pid(let pid):
            u8(ETFTag.newPid)
            atom(pid.node)
            u32(pid.id)
            u32(pid.serial)
            u32(pid.creation)
        case .ref(let reference):
            u8(ETFTag.newerReference)
            u16(UInt16(reference.ids.count))
            atom(reference.node)
            u32(reference.creation)
            for id in reference.ids { u32(id) }
        case .port(let port):
            if let small = UInt32(exactly: port.id) {
                u8(ETFTag.newPort)
                atom(port.node)
                u32(small)
            } else {
                u8(ETFTag.v4Port)
                atom(port.node)
                u64(port.id)
            }
            u32(port.creation)
        case .opaque(_, let bytes):
            self.bytes(bytes)
        }
    }
}
