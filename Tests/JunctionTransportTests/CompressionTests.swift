import Foundation
import JunctionCore
import NIOCore
import NIOEmbedded
import Testing

@testable import JunctionTransport

/// Frames as an outbox writes them to an embedded channel, with compression.
struct OutboxHarness {
    let channel = EmbeddedChannel()
    let outbox: FrameOutbox

    init(_ settings: CompressionSettings) {
        outbox = FrameOutbox(channel: channel, peer: "test", compression: settings)
    }

    /// Enqueues each payload as one message frame and returns the frames on the wire.
    func send(_ payloads: [[UInt8]]) throws -> [Frame] {
        for payload in payloads {
            try outbox.enqueueFrame(kind: 16, streamKey: 1, compressible: true) { $0.writeBytes(payload) }
        }
        channel.embeddedEventLoop.run()
        var parser = FrameParser(maxFrameSize: 1 << 24)
        var frames: [Frame] = []
        while let bytes = try channel.readOutbound(as: ByteBuffer.self) {
            try parser.consume(bytes) { frames.append($0) }
        }
        return frames
    }
}

/// JSON-like records that differ from each other, as real traffic does.
func records(_ count: Int, size: Int) -> [[UInt8]] {
    (0..<count).map { index in
        var text = ""
        var field = 0
        while text.utf8.count < size {
            text += "{\"id\":\(index * 7919 + field),\"name\":\"user-\(index % 97)-\(field)\",\"active\":\(field % 2 == 0),\"score\":\(Double(index) * 1.5 + Double(field))},"
            field += 1
        }
        return Array(text.utf8.prefix(size))
    }
}

@Suite("Compression")
struct CompressionTests {
    @Test("payloads round-trip in both modes across the threshold edges; only those above it are compressed",
          arguments: CompressionSettings.Mode.allCases)
    func thresholdEdges(mode: CompressionSettings.Mode) throws {
        let threshold = 1024
        let harness = OutboxHarness(CompressionSettings(level: 1, threshold: threshold, mode: mode))
        let payloads = [threshold - 1, threshold, threshold + 1, 5000, threshold + 1].enumerated().map { index, size in
            [UInt8](repeating: UInt8(index + 65), count: size)
        }
        let frames = try harness.send(payloads)
        #expect(frames.map { $0.flags & FrameFlags.compressed != 0 } == [false, false, true, true, true])
        let expectedIndependent = mode == .message
        #expect(frames.filter { $0.flags & FrameFlags.compressed != 0 }.allSatisfy { ($0.flags & FrameFlags.independent != 0) == expectedIndependent })
        let inflater = Inflater(limit: 1 << 20)
        for (frame, payload) in zip(frames, payloads) {
            let body = frame.flags & FrameFlags.compressed != 0
                ? try inflater.inflate(frame.payload, flags: frame.flags, allocator: ByteBufferAllocator()) : frame.payload
            #expect(Array(body.readableBytesView) == payload)
        }
    }

    @Test("stream mode shares the window between similar messages: fewer wire bytes than message mode")
    func streamBeatsMessage() throws {
        let data = records(200, size: 2048)
        let stream = try OutboxHarness(CompressionSettings(mode: .stream)).send(data).reduce(0) { $0 + $1.payload.readableBytes }
        let message = try OutboxHarness(CompressionSettings(mode: .message)).send(data).reduce(0) { $0 + $1.payload.readableBytes }
        #expect(stream < message)
    }

    @Test("compressed frames decode with a stock zlib (Python's), in both modes (stream mode: raw deflate, each frame once its sync-flush trailer is restored)",
        arguments: CompressionSettings.Mode.allCases)
    func stockZlib(mode: CompressionSettings.Mode) async throws {
        let data = records(20, size: 3000)
        let frames = try OutboxHarness(CompressionSettings(level: 1, threshold: 0, mode: mode)).send(data)
        if mode == .stream {
            #expect(frames.allSatisfy { !$0.payload.readableBytesView.suffix(4).elementsEqual([0x00, 0x00, 0xFF, 0xFF]) }, "the trailer is not sent")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("junction-zlib-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for (index, frame) in frames.enumerated() {
            try Data(frame.payload.readableBytesView).write(to: directory.appendingPathComponent(String(format: "%04d", index)))
        }
        let script = """
            import os, sys, zlib, hashlib
            d = sys.argv[1]
            stream = zlib.decompressobj(-15)
            for name in sorted(os.listdir(d)):
                data = open(os.path.join(d, name), 'rb').read()
                out = zlib.decompress(data) if sys.argv[2] == 'message' else stream.decompress(data + b'\\x00\\x00\\xff\\xff')
                print(hashlib.sha256(out).hexdigest())
            """
        let output = try await run("/usr/bin/python3", ["-c", script, directory.path, mode.rawValue])
        var expected: [String] = []
        for payload in data {
            let digest = try await run("/usr/bin/python3", ["-c", "import sys,hashlib; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())"], input: Data(payload))
            expected.append(digest.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        #expect(output.split(separator: "\n").map(String.init) == expected)
    }

    @Test("a frame that inflates past the limit is an error naming the limit, in both modes")
    func bomb() throws {
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        let frames = try OutboxHarness(CompressionSettings(level: 9, threshold: 0, mode: .message)).send([zeros])
        let inflater = Inflater(limit: 64 << 10)
        let error = try #require(throws: CompressionError.self) {
            try inflater.inflate(frames[0].payload, flags: frames[0].flags, allocator: ByteBufferAllocator())
        }
        #expect(error.description.contains("past the maximum message size of 65536 bytes"))
        let streamFrames = try OutboxHarness(CompressionSettings(level: 9, threshold: 0, mode: .stream)).send([zeros])
        #expect(throws: CompressionError.self) {
            try Inflater(limit: 64 << 10).inflate(streamFrames[0].payload, flags: streamFrames[0].flags, allocator: ByteBufferAllocator())
        }
    }

    @Test("garbage flagged as compressed is an error, not a crash")
    func garbage() throws {
        let inflater = Inflater(limit: 1 << 20)
        #expect(throws: CompressionError.self) {
            try inflater.inflate(ByteBuffer(bytes: [1, 2, 3, 4, 5]), flags: FrameFlags.compressed | FrameFlags.independent, allocator: ByteBufferAllocator())
        }
    }
}

/// Runs `executable` on a thread of its own and returns its output: Foundation's
/// `Process` completes its waits on the same few threads as Swift's concurrency, so a
/// blocking wait there can starve them all when many tests run at once.
func run(_ executable: String, _ arguments: [String], input: Data? = nil) async throws -> String {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try runBlocking(executable, arguments, input: input) }) }
    }
}

func runBlocking(_ executable: String, _ arguments: [String], input: Data?) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    let stdin = Pipe()
    if input != nil { process.standardInput = stdin }
    try process.run()
    if let input {
        stdin.fileHandleForWriting.write(input)
        try stdin.fileHandleForWriting.close()
    }
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}
