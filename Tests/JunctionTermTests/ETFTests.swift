import NIOCore
import Testing

@testable import JunctionTerm

/// Hex text ("83 68 02 ...") to bytes.
func hex(_ text: String) -> [UInt8] {
    text.split(separator: " ").map { UInt8($0, radix: 16)! }
}

let sampleTerms: [Term] = [
    .atom("hello"), .atom(""), .atom("ünïcødé"), .atom(Atom(String(repeating: "é", count: 200))),
    .int(0), .int(255), .int(256), .int(-1), .int(Int(Int32.max)), .int(Int(Int32.min)),
    .int(Int(Int32.max) + 1), .int(Int.max), .int(Int.min),
    .bigInt(BigInteger(isNegative: false, magnitude: [UInt8](repeating: 0xFF, count: 9))),
    .bigInt(BigInteger(isNegative: true, magnitude: [UInt8](repeating: 0x12, count: 300))),
    .float(3.5), .float(-0.0), .float(1e300),
    .string(Array("abc".utf8)), .string([UInt8](repeating: 7, count: 70_000)),
    .binary([]), .binary([1, 2, 3]), .bitBinary([0xFF, 0x80], bits: 1),
    .list([]), .list([.atom("a"), .int(300)]), .improperList([.int(1)], tail: .atom("t")),
    .tuple([]), .tuple([.atom("ok"), .int(1)]), .tuple((0..<300).map { .int($0) }),
    .map([]), .map([MapEntry(.atom("k"), .list([.int(1000), .int(2000)]))]),
    .pid(Pid(node: "a@host", id: 85, serial: 3, creation: 1_795_433_138)),
    .ref(Reference(node: "a@host", creation: 7, ids: [1, 2, 3])),
    .port(Port(node: "a@host", id: 5, creation: 9)), .port(Port(node: "a@host", id: 1 << 40, creation: 9)),
    .opaque(tag: ETFTag.export, bytes: [113, 119, 1, 109, 119, 1, 102, 97, 2]),
]

@Suite("External Term Format")
struct ETFTests {
    @Test("every term kind survives encode then decode", arguments: sampleTerms)
    func roundTrip(term: Term) throws {
        let bytes = try ETF.encode(term)
        #expect(try ETF.decode(bytes) == term)
        var buffer = ByteBuffer(bytes: bytes)
        try ETF.validate(buffer)
        buffer.moveReaderIndex(forwardBy: 0)
        #expect(try ETF.decode(buffer) == term)
    }

    @Test("every strict prefix of an encoding is reported as truncated, never trapped on", arguments: sampleTerms.filter { ((try? ETF.encode($0))?.count ?? 0) < 4096 })
    func everySplit(term: Term) throws {
        let bytes = try ETF.encode(term)
        for cut in 0..<bytes.count {
            #expect(throws: ETFError.self) { try ETF.decode(Array(bytes[..<cut])) }
            #expect(throws: ETFError.self) { try ETF.validate(ByteBuffer(bytes: bytes[..<cut])) }
        }
    }

    @Test("the REG_SEND control and message terms OTP 25 put on the wire decode as expected")
    func otpVectors() throws {
        let pid = Term.pid(Pid(node: "py@vm", id: 1, serial: 0, creation: 0x6b04_240f))
        let control = hex("83 68 04 61 06 58 77 05 70 79 40 76 6d 00 00 00 01 00 00 00 00 6b 04 24 0f 77 00 77 04 65 63 68 6f")
        #expect(try ETF.decode(control) == .tuple([.int(6), pid, .atom(""), .atom("echo")]))
        let message = hex("83 68 02 58 77 05 70 79 40 76 6d 00 00 00 01 00 00 00 00 6b 04 24 0f 77 11 68 65 6c 6c 6f 5f 66 72 6f 6d 5f 70 79 74 68 6f 6e")
        #expect(try ETF.decode(message) == .tuple([pid, .atom("hello_from_python")]))
        // Our encoder writes the same bytes OTP does.
        #expect(try ETF.encode(.tuple([.int(6), pid, .atom(""), .atom("echo")])) == control)
        #expect(try ETF.encode(.tuple([pid, .atom("hello_from_python")])) == message)

        let cPid = hex("83 58 77 04 63 40 76 6d 00 00 00 09 00 00 00 00 6b 04 22 b3")
        #expect(try ETF.decode(cPid) == .pid(Pid(node: "c@vm", id: 9, serial: 0, creation: 0x6b04_22b3)))
        let reply = hex("83 68 02 77 04 65 63 68 6f 77 04 70 69 6e 67")
        #expect(try ETF.decode(reply) == .tuple([.atom("echo"), .atom("ping")]))
    }

    @Test("legacy and decode-only tags decode")
    func legacyTags() throws {
        // ATOM_EXT (Latin-1), SMALL_ATOM_EXT, PID_EXT, NEW_REFERENCE_EXT, REFERENCE_EXT, PORT_EXT, FLOAT_EXT.
        #expect(try ETF.decode([131, 100, 0, 3, 0x61, 0xE9, 0x62]) == .atom("aéb"))
        #expect(try ETF.decode([131, 115, 2, 0x6F, 0x6B]) == .atom("ok"))
        // UTF-8 atoms: ASCII, multi-byte, and bytes that are not UTF-8 (refused).
        #expect(try ETF.decode([131, 119, 2, 0x6F, 0x6B]) == .atom("ok"))
        #expect(try ETF.decode([131, 119, 3, 0x61, 0xC3, 0xA9]) == .atom("aé"))
        #expect(throws: ETFError.self) { try ETF.decode([131, 119, 2, 0xC3, 0x28]) }
        #expect(try ETF.decode([131, 103, 115, 1, 0x61, 0, 0, 0, 5, 0, 0, 0, 1, 2]) == .pid(Pid(node: "a", id: 5, serial: 1, creation: 2)))
        #expect(try ETF.decode([131, 114, 0, 2, 115, 1, 0x61, 3, 0, 0, 0, 1, 0, 0, 0, 2]) == .ref(Reference(node: "a", creation: 3, ids: [1, 2])))
        #expect(try ETF.decode([131, 101, 115, 1, 0x61, 0, 0, 0, 9, 1]) == .ref(Reference(node: "a", creation: 1, ids: [9])))
        #expect(try ETF.decode([131, 102, 115, 1, 0x61, 0, 0, 0, 9, 1]) == .port(Port(node: "a", id: 9, creation: 1)))
        var floatText = Array("1.50000000000000000000e+00".utf8)
        floatText += [UInt8](repeating: 0, count: 31 - floatText.count)
        #expect(try ETF.decode([131, 99] + floatText) == .float(1.5))
        // An atom cache reference resolves through the header's cache.
        var options = ETFDecodingOptions()
        options.atomCache = [nil, Atom("cached")]
        #expect(try ETF.decode([131, 82, 1], options: options) == .atom("cached"))
        #expect(throws: ETFError.self) { try ETF.decode([131, 82, 0], options: options) }
        // NEW_FUN_EXT is kept opaque, by its declared size.
        let fun: [UInt8] = [112, 0, 0, 0, 8, 1, 2, 3, 4]
        #expect(try ETF.decode([131] + fun) == .opaque(tag: 112, bytes: fun))
    }

    @Test("a compressed term (tag 80) decodes, and large repetitive terms encode compressed")
    func compressed() throws {
        let term = Term.tuple([.binary([UInt8](repeating: 42, count: 10_000)), .atom("x")])
        let bytes = try ETF.encode(term, compressionLevel: 6)
        #expect(bytes[1] == ETFTag.compressed)
        #expect(bytes.count < 200)
        #expect(try ETF.decode(bytes) == term)
        // A small term stays uncompressed: compression would not make it smaller.
        #expect(try ETF.encode(.atom("a"), compressionLevel: 6)[1] == ETFTag.smallAtomUTF8)
    }

    @Test("a compressed term that inflates past its declared size is an error, not an allocation")
    func compressionBomb() throws {
        let inner = [UInt8(ETFTag.binary), 0, 0x10, 0, 0] + [UInt8](repeating: 0, count: 1 << 20)
        let deflated = inner.withUnsafeBytes { Zlib.deflate($0, level: 9) }
        // Declares 100 bytes; the data would inflate to 1 MiB.
        let bomb: [UInt8] = [131, 80, 0, 0, 0, 100] + deflated
        let error = try #require(throws: ETFError.self) { try ETF.decode(bomb) }
        #expect(error.tag == ETFTag.compressed)
        #expect(error.description.contains("more than 100"))
        var options = ETFDecodingOptions()
        options.maxUncompressedSize = 1024
        let tooLarge: [UInt8] = [131, 80, 0, 0x10, 0, 5] + deflated
        let limitError = try #require(throws: ETFError.self) { try ETF.decode(tooLarge, options: options) }
        #expect(limitError.description.contains("above the limit of 1024"))
    }

    @Test("hostile lengths are refused before allocating, naming tag and offset")
    func hostileLengths() throws {
        let list = try #require(throws: ETFError.self) { try ETF.decode([131, 108, 0xFF, 0xFF, 0xFF, 0xFF, 106]) }
        #expect(list.tag == ETFTag.list && list.offset == 1)
        #expect(list.description.contains("tag 108 at offset 1"))
        let map = try #require(throws: ETFError.self) { try ETF.decode([131, 104, 1, 116, 0x7F, 0, 0, 0]) }
        #expect(map.tag == ETFTag.map && map.offset == 3)
        let unknown = try #require(throws: ETFError.self) { try ETF.decode([131, 104, 2, 97, 1, 200]) }
        #expect(unknown.description == "ETF: unknown tag 200 at offset 5")
        #expect(throws: ETFError.self) { try ETF.decode([130, 97, 1]) }
        #expect(throws: ETFError.self) { try ETF.decode([131, 97, 1, 0]) }
        #expect(throws: ETFError.self) { try ETF.decode([131, 119, 2, 0xC3, 0x28]) }
        #expect(throws: ETFError.self) { try ETF.decode([131, 90, 0, 9, 119, 1, 0x61] + [UInt8](repeating: 0, count: 40)) }
    }

    @Test("nesting deeper than the limit is an error, not a stack overflow")
    func deepNesting() throws {
        let bytes: [UInt8] = [131] + [UInt8](repeating: 104, count: 100_000).flatMap { [$0, 1] } + [106]
        let error = try #require(throws: ETFError.self) { try ETF.decode(bytes) }
        #expect(error.description.contains("nested deeper than 256"))
        #expect(throws: ETFError.self) { try ETF.validate(ByteBuffer(bytes: bytes)) }
    }

    @Test("random bytes never trap the decoder")
    func randomBytes() {
        var generator = SplitMix64(seed: 2026)
        for _ in 0..<20_000 {
            let count = Int(generator.next() % 40)
            var bytes: [UInt8] = [131]
            for _ in 0..<count { bytes.append(UInt8(truncatingIfNeeded: generator.next() % 13 == 0 ? 104 + generator.next() % 18 : generator.next())) }
            _ = try? ETF.decode(bytes)
            _ = try? ETF.validate(ByteBuffer(bytes: bytes))
        }
    }
}

/// A small deterministic generator, so a failing fuzz case can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
