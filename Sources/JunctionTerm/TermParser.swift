/// Parses Erlang term syntax: atoms (bare or quoted), integers of any size (also
/// `16#ff` and `$c`), floats, `"strings"`, `<<"binaries">>` and `<<1,2,3>>`, lists
/// (also `[H|T]`), tuples and maps (`#{k => v}`). Used by the command line.
public struct TermParser {
    public struct Failure: Error, Sendable, Hashable, CustomStringConvertible {
        public let message: String
        /// 1-based column of the problem.
        public let column: Int
        public var description: String { "\(message) at column \(column)" }
    }

    let text: [UInt8]
    var position = 0

    /// Parses exactly one term; an optional trailing `.` is allowed, as in the shell.
    public static func parse(_ source: String) throws(Failure) -> Term {
        var parser = TermParser(text: Array(source.utf8))
        let term = try parser.term()
        parser.skipSpace()
        if parser.peek == UInt8(ascii: ".") { parser.position += 1 }
        parser.skipSpace()
        guard parser.position == parser.text.count else { throw parser.failure("unexpected text after the term") }
        return term
    }

    var peek: UInt8? { position < text.count ? text[position] : nil }

    func failure(_ message: String) -> Failure { Failure(message: message, column: position + 1) }

    mutating func skipSpace() {
        while let byte = peek, byte == 32 || byte == 9 || byte == 10 || byte == 13 { position += 1 }
    }

    mutating func expect(_ literal: String) throws(Failure) {
        skipSpace()
        let bytes = Array(literal.utf8)
        guard text[position...].starts(with: bytes) else { throw failure("expected '\(literal)'") }
        position += bytes.count
    }

    mutating func consume(_ literal: String) -> Bool {
        skipSpace()
        let bytes = Array(literal.utf8)
        guard text[position...].starts(with: bytes) else { return false }
        position += bytes.count
        return true
    }

    mutating func term() throws(Failure) -> Term {
        skipSpace()
        guard let byte = peek else { throw failure("expected a term, found the end of the input") }
        switch byte {
        case UInt8(ascii: "{"):
            position += 1
            return .tuple(try elements(closing: "}"))
        case UInt8(ascii: "["):
            position += 1
            return try list()
        case UInt8(ascii: "#"):
            try expect("#{")
            return try map()
        case UInt8(ascii: "<"):
            try expect("<<")
            return try binary()
        case UInt8(ascii: "\""):
            return .canonicalList(try quoted(UInt8(ascii: "\"")).map { .int(Int($0)) })
        case UInt8(ascii: "'"):
            return .atom(Atom(String(decoding: try quoted(UInt8(ascii: "'")), as: UTF8.self)))
        case UInt8(ascii: "$"):
            position += 1
            guard let character = peek else { throw failure("expected a character after '$'") }
            position += 1
            if character == UInt8(ascii: "\\") { return .int(Int(try escape())) }
            return .int(Int(character))
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return try number()
        case UInt8(ascii: "a")...UInt8(ascii: "z"):
            let start = position
            while let next = peek, isAtomCharacter(next) { position += 1 }
            return .atom(Atom(String(decoding: text[start..<position], as: UTF8.self)))
        default:
            throw failure("unexpected character '\(Character(Unicode.Scalar(byte)))'")
        }
    }

    func isAtomCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "@"):
            return true
        default:
            return false
        }
    }

    mutating func elements(closing: String) throws(Failure) -> [Term] {
        var result: [Term] = []
        if consume(closing) { return result }
        repeat { result.append(try term()) } while consume(",")
        try expect(closing)
        return result
    }

    mutating func list() throws(Failure) -> Term {
        var result: [Term] = []
        if consume("]") { return .list([]) }
        repeat { result.append(try term()) } while consume(",")
        if consume("|") {
            let tail = try term()
            try expect("]")
            if case .list(let rest) = tail { return .canonicalList(result + rest) }
            if case .string(let rest) = tail { return .canonicalList(result + rest.map { .int(Int($0)) }) }
            return .improperList(result, tail: tail)
        }
        try expect("]")
        return .canonicalList(result)
    }

    mutating func map() throws(Failure) -> Term {
        var entries: [MapEntry] = []
        if consume("}") { return .map(entries) }
        repeat {
            let key = try term()
            try expect("=>")
            entries.append(MapEntry(key, try term()))
        } while consume(",")
        try expect("}")
        return .map(entries)
    }

    mutating func binary() throws(Failure) -> Term {
        var bytes: [UInt8] = []
        if consume(">>") { return .binary(bytes) }
        repeat {
            skipSpace()
            if peek == UInt8(ascii: "\"") {
                bytes += try quoted(UInt8(ascii: "\""))
                continue
            }
            guard case .int(let value) = try number(), (0...255).contains(value) else {
                throw failure("binary elements must be strings or integers 0..255")
            }
            bytes.append(UInt8(value))
        } while consume(",")
        try expect(">>")
        return .binary(bytes)
    }

    mutating func quoted(_ quote: UInt8) throws(Failure) -> [UInt8] {
        position += 1
        var bytes: [UInt8] = []
        while true {
            guard let byte = peek else { throw failure("unterminated quoted text") }
            position += 1
            if byte == quote { return bytes }
            bytes.append(byte == UInt8(ascii: "\\") ? try escape() : byte)
        }
    }

    mutating func escape() throws(Failure) -> UInt8 {
        guard let byte = peek else { throw failure("unterminated escape") }
        position += 1
        switch byte {
        case UInt8(ascii: "n"): return 10
        case UInt8(ascii: "t"): return 9
        case UInt8(ascii: "r"): return 13
        case UInt8(ascii: "s"): return 32
        case UInt8(ascii: "e"): return 27
        case UInt8(ascii: "0"): return 0
        default: return byte
        }
    }

    mutating func number() throws(Failure) -> Term {
        skipSpace()
        let start = position
        if peek == UInt8(ascii: "-") { position += 1 }
        let digitsStart = position
        while let byte = peek, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { position += 1 }
        guard position > digitsStart else { throw failure("expected digits") }
        if peek == UInt8(ascii: "#") {
            return try radixNumber(start: start, digitsStart: digitsStart)
        }
        var isFloat = false
        if peek == UInt8(ascii: "."), position + 1 < text.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(text[position + 1]) {
            isFloat = true
            position += 1
            while let byte = peek, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { position += 1 }
            if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
                position += 1
                if peek == UInt8(ascii: "-") || peek == UInt8(ascii: "+") { position += 1 }
                while let byte = peek, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { position += 1 }
            }
        }
        let literal = String(decoding: text[start..<position], as: UTF8.self)
        if isFloat {
            guard let value = Double(literal) else { throw failure("'\(literal)' is not a float") }
            return .float(value)
        }
        guard let value = BigInteger(decimal: Substring(literal)) else { throw failure("'\(literal)' is not an integer") }
        return .integer(value)
    }

    mutating func radixNumber(start: Int, digitsStart: Int) throws(Failure) -> Term {
        let negative = text[start] == UInt8(ascii: "-")
        guard let radix = Int(String(decoding: text[digitsStart..<position], as: UTF8.self)), (2...36).contains(radix) else {
            throw failure("radix must be 2..36")
        }
        position += 1
        let valueStart = position
        while let byte = peek, isAtomCharacter(byte), byte != UInt8(ascii: "_"), byte != UInt8(ascii: "@") { position += 1 }
        let digits = String(decoding: text[valueStart..<position], as: UTF8.self)
        guard let value = Int(digits, radix: radix) else { throw failure("'\(digits)' is not a base-\(radix) integer") }
        return .int(negative ? -value : value)
    }
}
