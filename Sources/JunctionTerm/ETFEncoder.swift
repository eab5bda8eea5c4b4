import NIOCore

/// Encodes terms in External Term Format, choosing the forms OTP 25+ sends: UTF-8 atoms,
/// NEW_FLOAT_EXT, NEW_PID_EXT, NEWER_REFERENCE_EXT, STRING_EXT for byte lists.
public enum ETFEncoder {
    /// Appends the term without the version byte.
    public static func write(_ term: Term, into buffer: inout ByteBuffer) throws(ETFError) {
        switch term {
        case .atom(let atom):
            try write(atom, into: &buffer)
        case .int(let value):
            if (0...255).contains(value) {
                buffer.writeMultipleIntegers(ETFTag.smallInteger, UInt8(value))
            } else if let small = Int32(exactly: value) {
                buffer.writeMultipleIntegers(ETFTag.integer, small)
            } else {
                write(BigInteger(value), into: &buffer)
            }
        case .bigInt(let value):
            write(value, into: &buffer)
        case .float(let value):
            buffer.writeMultipleIntegers(ETFTag.newFloat, value.bitPattern)
        case .string(let bytes):
            if bytes.count <= Int(UInt16.max) {
                buffer.writeMultipleIntegers(ETFTag.string, UInt16(bytes.count))
                buffer.writeBytes(bytes)
            } else {
                buffer.writeMultipleIntegers(ETFTag.list, UInt32(bytes.count))
                for byte in bytes { buffer.writeMultipleIntegers(ETFTag.smallInteger, byte) }
                buffer.writeInteger(ETFTag.nil)
            }
        case .binary(let bytes):
            try checkLength(bytes.count, "binary")
            buffer.writeMultipleIntegers(ETFTag.binary, UInt32(bytes.count))
            buffer.writeBytes(bytes)
        case .bitBinary(let bytes, let bits):
            guard !bytes.isEmpty, (1...8).contains(bits) else {
                throw ETFError(.notEncodable("a bit binary needs at least one byte and 1...8 bits in its last"), tag: ETFTag.bitBinary, offset: 0)
            }
            try checkLength(bytes.count, "bit binary")
            buffer.writeMultipleIntegers(ETFTag.bitBinary, UInt32(bytes.count), bits)
            buffer.writeBytes(bytes)
        case .list(let elements):
            guard !elements.isEmpty else {
                buffer.writeInteger(ETFTag.nil)
                return
            }
            try checkLength(elements.count, "list")
            buffer.writeMultipleIntegers(ETFTag.list, UInt32(elements.count))
            for element in elements { try write(element, into: &buffer) }
            buffer.writeInteger(ETFTag.nil)
        case .improperList(let elements, let tail):
            try checkLength(elements.count, "list")
            buffer.writeMultipleIntegers(ETFTag.list, UInt32(elements.count))
            for element in elements { try write(element, into: &buffer) }
            try write(tail, into: &buffer)
        case .tuple(let elements):
            if elements.count <= 255 {
                buffer.writeMultipleIntegers(ETFTag.smallTuple, UInt8(elements.count))
            } else {
                try checkLength(elements.count, "tuple")
                buffer.writeMultipleIntegers(ETFTag.largeTuple, UInt32(elements.count))
            }
            for element in elements { try write(element, into: &buffer) }
        case .map(let entries):
            try checkLength(entries.count, "map")
            buffer.writeMultipleIntegers(ETFTag.map, UInt32(entries.count))
            for entry in entries {
                try write(entry.key, into: &buffer)
                try write(entry.value, into: &buffer)
            }
        case .pid(let pid):
            buffer.writeInteger(ETFTag.newPid)
            try write(pid.node, into: &buffer)
            buffer.writeMultipleIntegers(pid.id, pid.serial, pid.creation)
        case .ref(let reference):
            guard (1...5).contains(reference.ids.count) else {
                throw ETFError(.notEncodable("a reference has 1...5 words, not \(reference.ids.count)"), tag: ETFTag.newerReference, offset: 0)
            }
            buffer.writeMultipleIntegers(ETFTag.newerReference, UInt16(reference.ids.count))
            try write(reference.node, into: &buffer)
            buffer.writeInteger(reference.creation)
            for id in reference.ids { buffer.writeInteger(id) }
        case .port(let port):
            if let small = UInt32(exactly: port.id) {
                buffer.writeInteger(ETFTag.newPort)
                try write(port.node, into: &buffer)
                buffer.writeMultipleIntegers(small, port.creation)
            } else {
                buffer.writeInteger(ETFTag.v4Port)
                try write(port.node, into: &buffer)
                buffer.writeMultipleIntegers(port.id, port.creation)
            }
        case .opaque(_, let bytes):
            buffer.writeBytes(bytes)
        }
    }

    /// Appends an atom: SMALL_ATOM_UTF8_EXT when its UTF-8 fits 255 bytes.
    public static func write(_ atom: Atom, into buffer: inout ByteBuffer) throws(ETFError) {
        let utf8 = atom.name.utf8
        if utf8.count <= 255 {
            buffer.writeMultipleIntegers(ETFTag.smallAtomUTF8, UInt8(utf8.count))
        } else {
            let characters = atom.name.unicodeScalars.count
            guard characters <= 255 else {
                throw ETFError(.atomTooLong(characters: characters), tag: ETFTag.atomUTF8, offset: 0)
            }
            buffer.writeMultipleIntegers(ETFTag.atomUTF8, UInt16(utf8.count))
        }
        buffer.writeString(atom.name)
    }

    static func write(_ value: BigInteger, into buffer: inout ByteBuffer) {
        let digits = value.magnitude
        if digits.count <= 255 {
            buffer.writeMultipleIntegers(ETFTag.smallBig, UInt8(digits.count), UInt8(value.isNegative ? 1 : 0))
        } else {
            buffer.writeMultipleIntegers(ETFTag.largeBig, UInt32(digits.count), UInt8(value.isNegative ? 1 : 0))
        }
        buffer.writeBytes(digits)
    }

    static func checkLength(_ count: Int, _ what: String) throws(ETFError) {
        guard count <= Int(UInt32.max) else {
            throw ETFError(.notEncodable("a \(what) of \(count) elements exceeds 2^32-1"), tag: 0, offset: 0)
        }
    }
}
