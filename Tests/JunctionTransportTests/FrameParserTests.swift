import JunctionTransport
import NIOCore
import Testing

@Suite("Frame parser")
struct FrameParserTests {
    /// Three frames of different sizes, back to back, as one byte stream.
    static func stream() -> (bytes: [UInt8], frames: [(UInt8, UInt32, [UInt8])]) {
        let frames: [(UInt8, UInt32, [UInt8])] = [(16, 7, Array("hello".utf8)), (17, 0xDEAD_BEEF, []), (16, 1, [UInt8](repeating: 9, count: 300))]
        var buffer = ByteBuffer()
        for (kind, key, payload) in frames { Frame.write(kind: kind, streamKey: key, payload: ByteBuffer(bytes: payload), into: &buffer) }
        return (Array(buffer.readableBytesView), frames)
    }

    func parse(_ pieces: [ArraySlice<UInt8>]) throws -> [(UInt8, UInt32, [UInt8])] {
        var parser = FrameParser(maxFrameSize: 1024)
        var out: [(UInt8, UInt32, [UInt8])] = []
        for piece in pieces {
            try parser.consume(ByteBuffer(bytes: piece)) { frame in out.append((frame.kind, frame.streamKey, Array(frame.payload.readableBytesView))) }
        }
        #expect(parser.bufferedBytes == 0)
        return out
    }

    @Test("every split of the stream into two and three pieces yields the same frames")
    func everySplit() throws {
        let (bytes, frames) = Self.stream()
        func same(_ parsed: [(UInt8, UInt32, [UInt8])]) -> Bool {
            parsed.count == frames.count && zip(parsed, frames).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 && $0.2 == $1.2 }
        }
        for cut in 0...bytes.count {
            #expect(same(try parse([bytes[..<cut], bytes[cut...]])), "split at \(cut)")
        }
        for first in stride(from: 0, through: bytes.count, by: 7) {
            for second in stride(from: first, through: bytes.count, by: 5) {
                #expect(same(try parse([bytes[..<first], bytes[first..<second], bytes[second...]])), "splits at \(first), \(second)")
            }
        }
        #expect(same(try parse(bytes.map { [$0][...] })), "byte by byte")
    }

    @Test("only a frame split across reads is copied: the frames after it are cut from the read in place")
    func inPlace() throws {
        let (bytes, frames) = Self.stream()
        var parser = FrameParser(maxFrameSize: 1024)
        try parser.consume(ByteBuffer(bytes: bytes[..<7])) { _ in Issue.record("the first frame is not whole yet") }
        let read = ByteBuffer(bytes: bytes[7...])
        let memory = read.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!)..<UInt(bitPattern: $0.baseAddress!) + UInt($0.count) }
        var fromTheRead: [Bool] = []
        var payloads: [[UInt8]] = []
        try parser.consume(read) { frame in
            payloads.append(Array(frame.payload.readableBytesView))
            fromTheRead.append(frame.payload.withUnsafeReadableBytes { memory.contains(UInt(bitPattern: $0.baseAddress!)) })
        }
        #expect(payloads == frames.map(\.2))
        #expect(fromTheRead.first == false, "the split frame was put together in the parser's buffer")
        #expect(fromTheRead.last == true, "the 300-byte frame after it is a slice of the read, not a copy")
        #expect(parser.bufferedBytes == 0)
    }

    @Test("a declared length above the limit is refused before the body arrives")
    func oversized() throws {
        var parser = FrameParser(maxFrameSize: 1024)
        let error = try #require(throws: MalformedFrame.self) {
            try parser.consume(ByteBuffer(bytes: [0x40, 0, 0, 0, 16, 0])) { _ in Issue.record("no frame expected") }
        }
        #expect(error.length == 0x4000_0000)
        #expect(error.description.contains("above the limit of 1024"))
        let short = try #require(throws: MalformedFrame.self) {
            try FrameParser(maxFrameSize: 1024).consumeOnce([0, 0, 0, 2, 16, 0])
        }
        #expect(short.description.contains("shorter than the 6-byte header"))
    }
}

extension FrameParser {
    func consumeOnce(_ bytes: [UInt8]) throws {
        var copy = self
        try copy.consume(ByteBuffer(bytes: bytes)) { _ in }
    }
}
