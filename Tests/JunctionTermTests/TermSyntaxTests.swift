import Testing

@testable import JunctionTerm

@Suite("Erlang term syntax")
struct TermSyntaxTests {
    @Test("the issue's example parses to the expected term and prints back")
    func example() throws {
        let term = try TermParser.parse(#"{hello, 42, <<"bin">>, #{k => [1,2]}}"#)
        #expect(term == .tuple([.atom("hello"), .int(42), .binary(Array("bin".utf8)), .map([MapEntry(.atom("k"), .string([1, 2]))])]))
        #expect(TermPrinter.print(term) == #"{hello,42,<<"bin">>,#{k => [1,2]}}"#)
    }

    @Test(
        "printing then parsing gives the same term",
        arguments: [
            "ok", "'Quoted atom'", "'it\\'s'", "'a@127.0.0.1'", "-17", "123456789012345678901234567890", "3.25", "1.0e-10",
            "\"text with \\\"quotes\\\"\\n\"", "[]", "[a,b|c]", "{}", "#{}", "<<>>", "<<1,2,200>>", "{ok,[1,2,3],\"abc\"}",
            "#{a => #{b => [x]}}", "[1000,2000]", "'receive'", "-9223372036854775809",
        ])
    func roundTrip(source: String) throws {
        let term = try TermParser.parse(source)
        #expect(try TermParser.parse(TermPrinter.print(term)) == term)
    }

    @Test("literal forms mean what Erlang means")
    func literals() throws {
        #expect(try TermParser.parse("16#ff") == .int(255))
        #expect(try TermParser.parse("$a") == .int(97))
        #expect(try TermParser.parse("\"ab\"") == .string([97, 98]))
        #expect(try TermParser.parse("[97, 98]") == .string([97, 98]))
        #expect(try TermParser.parse("\"\"") == .list([]))
        #expect(try TermParser.parse("[1|[2]]") == .string([1, 2]))
        #expect(try TermParser.parse("hello.") == .atom("hello"))
        #expect(try TermParser.parse("99999999999999999999") == .bigInt(BigInteger(decimal: "99999999999999999999")!))
        #expect(TermPrinter.print(.float(1e20)) == "1.0e20")
        #expect(TermPrinter.print(.float(2)) == "2.0")
        #expect(TermPrinter.print(.string([1, 2])) == "[1,2]")
        #expect(TermPrinter.print(.pid(Pid(node: "a@h", id: 5, serial: 0, creation: 1))) == "<a@h.5.0>")
    }

    @Test("syntax errors say what and where", arguments: [("{a,", 4), ("[1,2", 5), ("#{a}", 4), ("<<300>>", 6), ("ok ok", 4), ("'open", 6)])
    func errors(source: String, column: Int) throws {
        let error = try #require(throws: TermParser.Failure.self) { try TermParser.parse(source) }
        #expect(error.column == column, "\(error)")
    }
}
