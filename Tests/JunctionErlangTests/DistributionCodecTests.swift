import JunctionTerm
import NIOCore
import Testing

@testable import JunctionErlang

@Suite("Distribution codec")
struct DistributionCodecTests {
    let pid = Pid(node: "py@vm", id: 1, serial: 0, creation: 1_795_433_487)
    let passThrough = DistributionFlags.mandatory26
    let header = DistributionFlags.mandatory26.union([.fragments, .distHeaderAtomCache])

    func packets(_ buffer: ByteBuffer) -> [ByteBuffer] {
        var buffer = buffer
        var out: [ByteBuffer] = []
        while let length = buffer.readInteger(as: UInt32.self) { out.append(buffer.readSlice(length: Int(length))!) }
        return out
    }

    @Test("the live pass-through and header packets from OTP 25 decode; ours encode to the same bytes")
    func liveVectors() throws {
        let control = Term.tuple([.int(2), .atom(""), .pid(pid)])
        let message = Term.tuple([.atom("echo"), .atom("hello_from_python")])
        let live = hex(
            "70 83 68 03 61 02 77 00 58 77 05 70 79 40 76 6d 00 00 00 01 00 00 00 00 6b 04 24 0f 83 68 02 77 04 65 63 68 6f 77 11 68 65 6c 6c 6f 5f 66 72 6f 6d 5f 70 79 74 68 6f 6e"
        )
        var decoder = DistributionDecoder(flags: passThrough, maxMessageSize: 1 << 20)
        let decoded = try #require(try decoder.decode(live))
        #expect(decoded.control == control)
        #expect(try decoded.message?.term() == message)
        var encoder = DistributionEncoder(flags: passThrough)
        var out = ByteBuffer()
        try encoder.encode(DistributionMessage(control: control, message: .term(message)), into: &out)
        #expect(packets(out) == [live])

        let liveHeader = hex(
            "83 44 00 68 03 61 02 77 00 58 77 05 70 79 40 76 6d 00 00 00 01 00 00 00 00 6b 04 24 10 68 02 77 04 65 63 68 6f 77 11 68 65 6c 6c 6f 5f 66 72 6f 6d 5f 70 79 74 68 6f 6e"
        )
        var headerDecoder = DistributionDecoder(flags: header, maxMessageSize: 1 << 20)
        let fromHeader = try #require(try headerDecoder.decode(liveHeader))
        #expect(try fromHeader.message?.term() == message)
    }

    @Test("atom cache references: new entries fill the cache, later messages refer to them by index")
    func atomCache() throws {
        var decoder = DistributionDecoder(flags: header, maxMessageSize: 1 << 20)
        // Two new entries: ref 0 -> segment 0 slot 5 "echo", ref 1 -> segment 1 slot 7 "hi".
        var first = hex("83 44 02 98 00 05 04 65 63 68 6f 07 02 68 69")
        first.writeBytes([104, 3, 97, 2, 82, 0, 82, 1])  // {2, echo, hi} via ATOM_CACHE_REF
        first.writeBytes([82, 1])  // message: hi
        let decoded = try #require(try decoder.decode(first))
        #expect(decoded.control == .tuple([.int(2), .atom("echo"), .atom("hi")]))
        #expect(try decoded.message?.term() == .atom("hi"))
        // The same slots, no longer new: flags 0x10 (ref 0 old in segment 0, ref 1 old in segment 1).
        var second = hex("83 44 02 10 00 05 07")
        second.writeBytes([104, 2, 82, 1, 82, 0])
        #expect(try decoder.decode(second)?.control == .tuple([.atom("hi"), .atom("echo")]))
        // A reference to a slot never filled is an error, not a crash.
        let unknown = hex("83 44 01 00 09 68 01 52 00")
        #expect(throws: DistributionError.self) { try decoder.decode(unknown) }
    }

    @Test("a message larger than the fragment size goes out in fragments counting down to 1 and comes back whole")
    func fragments() throws {
        var encoder = DistributionEncoder(flags: header, fragmentSize: 1000)
        let big = Term.binary((0..<4500).map { UInt8($0 % 251) })
        let control = Term.tuple([.int(22), .pid(pid), .pid(pid)])
        var out = ByteBuffer()
        try encoder.encode(DistributionMessage(control: control, message: .term(big)), into: &out)
        let parts = packets(out)
        #expect(parts.count == 5)
        #expect(parts.map { $0.getInteger(at: $0.readerIndex + 1, as: UInt8.self) } == [69, 70, 70, 70, 70])
        #expect(parts.map { $0.getInteger(at: $0.readerIndex + 10, as: UInt64.self) } == [5, 4, 3, 2, 1])
        var decoder = DistributionDecoder(flags: header, maxMessageSize: 1 << 20)
        var results: [DistributionMessage] = []
        for part in parts { if let message = try decoder.decode(part) { results.append(message) } }
        #expect(results.count == 1)
        #expect(try results.first?.message?.term() == big)
        #expect(results.first?.control == control)

        // Out of order, or past the size limit: errors.
        var strict = DistributionDecoder(flags: header, maxMessageSize: 2000)
        _ = try strict.decode(parts[0])
        #expect(throws: DistributionError.self) { try strict.decode(parts[2]) }
        var small = DistributionDecoder(flags: header, maxMessageSize: 2000)
        _ = try small.decode(parts[0])
        _ = try small.decode(parts[1])
        #expect(throws: DistributionError.self) { try small.decode(parts[2]) }
    }

    @Test("the wrong layout for the negotiated flags is refused with the reason")
    func wrongLayout() {
        var passing = DistributionDecoder(flags: passThrough, maxMessageSize: 1 << 20)
        let error = #expect(throws: DistributionError.self) { try passing.decode(hex("83 44 00 68 01 61 02")) }
        #expect(error?.description.contains("112") == true)
        var headed = DistributionDecoder(flags: header, maxMessageSize: 1 << 20)
        #expect(throws: DistributionError.self) { try headed.decode(hex("70 83 68 01 61 02")) }
    }
}
