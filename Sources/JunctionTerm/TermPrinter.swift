/// Prints terms in Erlang syntax, as `io:format("~p")` would for the data types that
/// have a literal syntax. Pids, references, ports and funs print in a readable form
/// that Erlang also uses for display (`<node.id.serial>`, `#Ref<...>`).
public enum TermPrinter {
    public static func print(_ term: Term) -> String {
        var out = ""
        write(term, to: &out)
        return out
    }

    static func write(_ term: Term, to out: inout String) {
        switch term {
        case .atom(let atom): writeAtom(atom, to: &out)
        case .int(let value): out += String(value)
        case .bigInt(let value): out += value.description
        case .float(let value): out += formatFloat(value)
        case .string(let bytes):
            if bytes.allSatisfy(isPrintable) {
                writeQuoted(bytes, quote: "\"", to: &out)
            } else {
                writeSequence(bytes.map { Term.int(Int($0)) }, open: "[", close: "]", to: &out)
            }
        case .binary(let bytes):
            out += "<<"
            if !bytes.isEmpty, bytes.allSatisfy(isPrintable) {
                writeQuoted(bytes, quote: "\"", to: &out)
            } else {
                out += bytes.map(String.init).joined(separator: ",")
            }
            out += ">>"
        case .bitBinary(let bytes, let bits):
            var parts = bytes.dropLast().map(String.init)
            parts.append("\(bytes.last ?? 0):\(bits)")
            out += "<<" + parts.joined(separator: ",") + ">>"
        case .list(let elements):
            writeSequence(elements, open: "[", close: "]", to: &out)
        case .improperList(let elements, let tail):
            writeSequence(elements, open: "[", close: "", to: &out)
            out += "|"
            write(tail, to: &out)
            out += "]"
        case .tuple(let elements):
            writeSequence(elements, open: "{", close: "}", to: &out)
        case .map(let entries):
            out += "#{"
            for (index, entry) in entries.enumerated() {
                if index > 0 { out += "," }
                write(entry.key, to: &out)
                out += " => "
                write(entry.value, to: &out)
            }
            out += "}"
        case .pid(let pid): out += "<\(pid.node).\(pid.id).\(pid.serial)>"
        case .ref(let reference): out += "#Ref<\(reference.node)." + reference.ids.map(String.init).joined(separator: ".") + ">"
        case .port(let port): out += "#Port<\(port.node).\(port.id)>"
        case .opaque(let tag, let bytes): out += "#Fun<tag \(tag), \(bytes.count) bytes>"
        }
    }

    static func writeSequence(_ elements: [Term], open: String, close: String, to out: inout String) {
        out += open
        for (index, element) in elements.enumerated() {
            if index > 0 { out += "," }
            write(element, to: &out)
        }
        out += close
    }

    static func isPrintable(_ byte: UInt8) -> Bool {
        (32...126).contains(byte) || byte == 9 || byte == 10 || byte == 13
    }

    static func writeQuoted(_ bytes: some Sequence<UInt8>, quote: Character, to out: inout String) {
        out.append(quote)
        for byte in bytes {
            switch byte {
            case 10: out += "\\n"
            case 9: out += "\\t"
            case 13: out += "\\r"
            case UInt8(ascii: "\\"): out += "\\\\"
            case quote.asciiValue: out += "\\" + String(quote)
            default: out.append(Character(Unicode.Scalar(byte)))
            }
        }
        out.append(quote)
    }

    /// True when the atom prints without quotes: a lowercase letter, then letters,
    /// digits, `_` and `@`, and not a reserved word.
    public static func isBareAtom(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, ("a"..."z").contains(first) else { return false }
        guard !reservedWords.contains(name) else { return false }
        return name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "@" }
    }

    static let reservedWords: Set<String> = [
        "after", "and", "andalso", "band", "begin", "bnot", "bor", "bsl", "bsr", "bxor", "case", "catch", "cond",
        "div", "end", "fun", "if", "let", "maybe", "not", "of", "or", "orelse", "receive", "rem", "try", "when", "xor",
    ]

    static func writeAtom(_ atom: Atom, to out: inout String) {
        if isBareAtom(atom.name) {
            out += atom.name
            return
        }
        out += "'"
        for character in atom.name {
            switch character {
            case "'": out += "\\'"
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default: out.append(character)
            }
        }
        out += "'"
    }

    /// Shortest round-tripping text, always with a decimal point as Erlang requires.
    static func formatFloat(_ value: Double) -> String {
        guard value.isFinite else { return value.description }
        let text = value.description
        guard let exponent = text.firstIndex(where: { $0 == "e" || $0 == "E" }) else {
            return text.contains(".") ? text : text + ".0"
        }
        var mantissa = String(text[..<exponent])
        if !mantissa.contains(".") { mantissa += ".0" }
        var power = String(text[text.index(after: exponent)...])
        if power.hasPrefix("+") { power.removeFirst() }
        return mantissa + "e" + power
    }
}
