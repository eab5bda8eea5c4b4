/// An Erlang term: the value model shared by every stack, so a payload can cross the
/// gateway from one stack to another without being reinterpreted.
///
/// Canonical forms, which the decoder and the parser always produce:
/// - an integer that fits `Int` is `.int`; only larger ones are `.bigInt`;
/// - a non-empty proper list whose elements are all integers 0...255 is `.string`
///   (Erlang encodes `"abc"` and `[97,98,99]` alike);
/// - the empty list is `.list([])`.
public enum Term: Sendable, Hashable {
    case atom(Atom)
    case int(Int)
    case bigInt(BigInteger)
    case float(Double)
    /// A byte list (Erlang string); see the canonical forms above.
    case string([UInt8])
    case binary([UInt8])
    /// A bitstring whose last byte holds only `bits` significant bits (1...8).
    case bitBinary([UInt8], bits: UInt8)
    /// A proper list.
    case list([Term])
    /// A list whose tail is not `[]`: `[a, b | c]`.
    indirect case improperList([Term], tail: Term)
    case tuple([Term])
    /// A map; entries keep the order in which they were decoded or written.
    case map([MapEntry])
    case pid(Pid)
    case ref(Reference)
    case port(Port)
    /// A term kept as its encoded bytes (funs and exports: NEW_FUN_EXT, EXPORT_EXT,
    /// FUN_EXT), so it passes through the gateway unchanged. `bytes` start with the tag.
    case opaque(tag: UInt8, bytes: [UInt8])

    /// The empty list, `[]`.
    public static let emptyList: Term = .list([])

    /// Builds a list in canonical form: an all-byte non-empty list becomes `.string`.
    public static func canonicalList(_ elements: [Term]) -> Term {
        guard !elements.isEmpty else { return .list([]) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(elements.count)
        for element in elements {
            guard case .int(let value) = element, (0...255).contains(value) else { return .list(elements) }
            bytes.append(UInt8(value))
        }
        return .string(bytes)
    }

    /// Builds an integer in canonical form.
    public static func integer(_ value: BigInteger) -> Term {
        if let small = value.asInt { return .int(small) }
        return .bigInt(value)
    }
}

/// One key/value pair of a map term.
public struct MapEntry: Sendable, Hashable {
    public var key: Term
    public var value: Term

    public init(_ key: Term, _ value: Term) {
        self.key = key
        self.value = value
    }
}

/// An atom. Erlang limits atoms to 255 characters; the codec enforces it.
public struct Atom: Sendable, Hashable, Comparable, CustomStringConvertible, ExpressibleByStringLiteral {
    public var name: String

    public init(_ name: String) { self.name = name }
    public init(stringLiteral value: String) { self.name = value }

    public var description: String { name }
    public static func < (lhs: Atom, rhs: Atom) -> Bool { lhs.name < rhs.name }

    public static let empty: Atom = ""
    public static let `true`: Atom = "true"
    public static let `false`: Atom = "false"
}

/// A process identifier: which node minted it, its id and serial, and the node's creation.
public struct Pid: Sendable, Hashable, CustomStringConvertible {
    public var node: Atom
    public var id: UInt32
    public var serial: UInt32
    public var creation: UInt32

    public init(node: Atom, id: UInt32, serial: UInt32 = 0, creation: UInt32) {
        self.node = node
        self.id = id
        self.serial = serial
        self.creation = creation
    }

    public var description: String { TermPrinter.print(.pid(self)) }
}

/// A reference: node, creation and up to five 32-bit words.
public struct Reference: Sendable, Hashable, CustomStringConvertible {
    public var node: Atom
    public var creation: UInt32
    public var ids: [UInt32]

    public init(node: Atom, creation: UInt32, ids: [UInt32]) {
        self.node = node
        self.creation = creation
        self.ids = ids
    }

    public var description: String { TermPrinter.print(.ref(self)) }
}

/// A port identifier (decoded so it can be forwarded; Junction mints none).
public struct Port: Sendable, Hashable {
    public var node: Atom
    public var id: UInt64
    public var creation: UInt32

    public init(node: Atom, id: UInt64, creation: UInt32) {
        self.node = node
        self.id = id
        self.creation = creation
    }
}

extension Term: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByArrayLiteral
{
    /// A string literal is an atom, as in Erlang source.
    public init(stringLiteral value: String) { self = .atom(Atom(value)) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .float(value) }
    /// An array literal is a proper list in canonical form.
    public init(arrayLiteral elements: Term...) { self = .canonicalList(elements) }
}

extension Term: CustomStringConvertible {
    /// The term in Erlang syntax.
    public var description: String { TermPrinter.print(self) }
}
