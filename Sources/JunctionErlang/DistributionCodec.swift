import JunctionTerm
import NIOCore

/// A distribution protocol error: the connection that sent it is closed.
public struct DistributionError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One message of the connected phase: a control term (a tuple whose first element is the
/// operation) and, for sends and payload exits, the message term.
public struct DistributionMessage: Sendable {
    public var control: Term
    public var message: Payload?

    public init(control: Term, message: Payload? = nil) {
        self.control = control
        self.message = message
    }

    /// The operation code (`spec/erlang-distribution.md` §1.4 control messages).
    public var operation: Int? {
        guard case .tuple(let elements) = control, case .int(let op)? = elements.first else { return nil }
        return op
    }
}

/// Decodes the payloads of distribution packets (after their 4-byte length) in the layout
/// the handshake negotiated, reassembling fragments and keeping the atom cache the peer
/// fills, per connection direction. Not thread-safe: one per connection, used on its
/// event loop.
public struct DistributionDecoder {
    let usesHeader: Bool
    let maxMessageSize: Int
    /// 8 segments of 256 atoms, filled by the peer's distribution headers.
    var atomCache = [Atom?](repeating: nil, count: 2048)
    /// Fragmented messages being reassembled, by sequence id.
    var partial: [UInt64: Reassembly] = [:]

    struct Reassembly {
        var atoms: [Atom?]
        var bytes: ByteBuffer
        var nextFragment: UInt64
    }

    public init(flags: DistributionFlags, maxMessageSize: Int) {
        usesHeader = flags.contains(.distHeaderAtomCache) || flags.contains(.fragments)
        self.maxMessageSize = maxMessageSize
    }

    /// Decodes one packet; nil for a tick or for a fragment that does not complete its
    /// message yet.
    public mutating func decode(_ packet: ByteBuffer) throws(DistributionError) -> DistributionMessage? {
        var packet = packet
        guard let first = packet.readInteger(as: UInt8.self) else { return nil }
        if !usesHeader {
            guard first == 112 else {
                throw DistributionError("a packet starts with \(first), not 112 (pass-through), which the negotiated flags require")
            }
            return try Self.terms(packet, atoms: [], versioned: true)
        }
        guard first == ETFTag.version, let kind = packet.readInteger(as: UInt8.self) else {
            throw DistributionError("a packet starts with \(first), not 131 (distribution header), which the negotiated flags require")
        }
        switch kind {
        case 68:
            let atoms = try readHeader(&packet)
            return try Self.terms(packet, atoms: atoms, versioned: false)
        case 69:
            guard let (sequence, fragment) = packet.readMultipleIntegers(as: (UInt64, UInt64).self), fragment >= 1 else {
                throw DistributionError("a first fragment has a malformed header")
            }
            let atoms = try readHeader(&packet)
            if fragment == 1 { return try Self.terms(packet, atoms: atoms, versioned: false) }
            guard partial.count < 64 else { throw DistributionError("more than 64 fragmented messages are in progress at once") }
            partial[sequence] = Reassembly(atoms: atoms, bytes: packet, nextFragment: fragment - 1)
            return nil
        case 70:
            guard let (sequence, fragment) = packet.readMultipleIntegers(as: (UInt64, UInt64).self), var reassembly = partial.removeValue(forKey: sequence)
            else { throw DistributionError("a fragment continues a message that never started") }
            guard fragment == reassembly.nextFragment else {
                throw DistributionError("fragment \(fragment) of sequence \(sequence) arrived when \(reassembly.nextFragment) was due")
            }
            guard reassembly.bytes.readableBytes + packet.readableBytes <= maxMessageSize else {
                throw DistributionError("a fragmented message grows past the maximum message size of \(maxMessageSize) bytes")
            }
            reassembly.bytes.writeBuffer(&packet)
            if fragment == 1 { return try Self.terms(reassembly.bytes, atoms: reassembly.atoms, versioned: false) }
            reassembly.nextFragment -= 1
            partial[sequence] = reassembly
            return nil
        default:
            throw DistributionError("a packet has the unknown distribution header kind \(kind)")
        }
    }

    /// Reads `NumberOfAtomCacheRefs [Flags AtomCacheRefs]`, updating the cache, and
    /// returns the atoms the references in this message stand for.
    mutating func readHeader(_ packet: inout ByteBuffer) throws(DistributionError) -> [Atom?] {
        guard let count = packet.readInteger(as: UInt8.self) else { throw DistributionError("a distribution header is truncated") }
        guard count > 0 else { return [] }
        guard let flagBytes = packet.readBytes(length: Int(count) / 2 + 1) else { throw DistributionError("a distribution header's flags are truncated") }
        func nibble(_ index: Int) -> UInt8 {
            let byte = flagBytes[index / 2]
            return index % 2 == 0 ? byte & 0x0f : byte >> 4
        }
        let longAtoms = nibble(Int(count)) & 0x1 != 0
        var atoms: [Atom?] = []
        atoms.reserveCapacity(Int(count))
        for index in 0..<Int(count) {
            let flags = nibble(index)
            guard let internalIndex = packet.readInteger(as: UInt8.self) else { throw DistributionError("an atom cache reference is truncated") }
            let slot = Int(flags & 0x7) * 256 + Int(internalIndex)
            if flags & 0x8 != 0 {
                let length: Int?
                if longAtoms { length = packet.readInteger(as: UInt16.self).map(Int.init) } else { length = packet.readInteger(as: UInt8.self).map(Int.init) }
                guard let length, let text = packet.readString(length: length) else { throw DistributionError("a new atom cache entry is truncated") }
                atomCache[slot] = Atom(text)
            }
            guard let atom = atomCache[slot] else {
                throw DistributionError("an atom cache reference names slot \(slot), which the peer never filled")
            }
            atoms.append(atom)
        }
        return atoms
    }

    /// The control term and the optional message after it.
    static func terms(_ bytes: ByteBuffer, atoms: [Atom?], versioned: Bool) throws(DistributionError) -> DistributionMessage {
        var options = ETFDecodingOptions()
        options.atomCache = atoms
        do throws(ETFError) {
            return try bytes.withUnsafeReadableBytes { (raw) throws(ETFError) -> DistributionMessage in
                var decoder = ETFDecoder(bytes: raw, options: options)
                if versioned { try decoder.readVersion() }
                let control = try decoder.decodeTerm()
                guard decoder.offset < raw.count else { return DistributionMessage(control: control) }
                let start = decoder.offset
                if versioned {
                    // Pass-through: the message keeps its version byte and can be
                    // handed on as bytes.
                    try decoder.readVersion()
                    try decoder.skipTerm()
                    try decoder.expectEnd()
                    return DistributionMessage(control: control, message: .encoded(bytes.getSlice(at: bytes.readerIndex + start, length: raw.count - start)!))
                }
                let message = try decoder.decodeTerm()
                try decoder.expectEnd()
                return DistributionMessage(control: control, message: .term(message))
            }
        } catch {
            throw DistributionError("a distribution message is malformed: \(error)")
        }
    }
}

/// Encodes distribution messages in the negotiated layout, with their 4-byte length,
/// fragmenting a large message when the peer accepts fragments.
public struct DistributionEncoder: Sendable {
    let usesHeader: Bool
    let fragments: Bool
    public let fragmentSize: Int
    var nextSequence: UInt64 = 1

    public init(flags: DistributionFlags, fragmentSize: Int = 64 << 10) {
        usesHeader = flags.contains(.distHeaderAtomCache) || flags.contains(.fragments)
        fragments = flags.contains(.fragments)
        self.fragmentSize = fragmentSize
    }

    /// Appends the packets carrying `message` to `buffer`.
    public mutating func encode(_ message: DistributionMessage, into buffer: inout ByteBuffer) throws(ETFError) {
        let start = buffer.writerIndex
        buffer.writeInteger(UInt32(0))
        if usesHeader {
            buffer.writeMultipleIntegers(ETFTag.version, UInt8(68), UInt8(0))
            try ETFEncoder.write(message.control, into: &buffer)
            switch message.message {
            case .term(let term)?: try ETFEncoder.write(term, into: &buffer)
            case .encoded(let bytes)?: buffer.writeImmutableBuffer(bytes.getSlice(at: bytes.readerIndex + 1, length: bytes.readableBytes - 1)!)
            case nil: break
            }
        } else {
            buffer.writeInteger(UInt8(112))
            try ETF.encode(message.control, into: &buffer)
            try message.message?.write(into: &buffer)
        }
        let length = buffer.writerIndex - start - 4
        // Fragments carry the terms after the `131 68 0` header.
        if fragments, length - 3 > fragmentSize {
            var body = buffer.getSlice(at: start + 4 + 3, length: length - 3)!
            buffer.moveWriterIndex(to: start)
            fragment(&body, into: &buffer)
        } else {
            buffer.setInteger(UInt32(length), at: start)
        }
    }

    /// `131 69 Seq Frag 0 <data>` then `131 70 Seq Frag <data>`, fragment ids counting down
    /// to 1.
    mutating func fragment(_ body: inout ByteBuffer, into buffer: inout ByteBuffer) {
        let sequence = nextSequence
        nextSequence += 1
        var remaining = UInt64((body.readableBytes + fragmentSize - 1) / fragmentSize)
        var first = true
        while body.readableBytes > 0 {
            let chunk = body.readSlice(length: min(fragmentSize, body.readableBytes))!
            let header = first ? 19 : 18
            buffer.writeInteger(UInt32(header + chunk.readableBytes))
            buffer.writeMultipleIntegers(ETFTag.version, UInt8(first ? 69 : 70), sequence, remaining)
            if first { buffer.writeInteger(UInt8(0)) }
            buffer.writeImmutableBuffer(chunk)
            first = false
            remaining -= 1
        }
    }
}
