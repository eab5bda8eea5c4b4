import Foundation
import JunctionCore
import NIOCore
import NIOEmbedded
import Testing

@testable import JunctionTransport

/// Frames as an outbox writes them to an embedded channel, with compression and write
/// coalescing.
struct OutboxHarness {
    let channel = EmbeddedChannel()
    let outbox: FrameOutbox

    init(_ settings: CompressionSettings, batchLimit: Int = 64 << 10) {
        outbox = FrameOutbox(channel: channel, peer: "test", compression: settings, batchLimit: batchLimit, coalescing: .microseconds(50))
    }

    /// Enqueues each payload as one message frame and returns the frames on the wire.
    /// With `together`, the first goes and the rest follow at once, as senders faster than
    /// the link do: the coalescing window holds their write. Otherwise a quiet spell
    /// follows each, so each message goes alone.
    func send(_ payloads: [[UInt8]], together: Bool = false) throws -> [Frame] {
        for (index, payload) in payloads.enumerated() {
            try outbox.enqueueFrame(kind: 16, streamKey: 1, compressible: true) { $0.writeBytes(payload) }
            if together && index == 0 { channel.embeddedEventLoop.run() }
            if !together { channel.embeddedEventLoop.advanceTime(by: .milliseconds(1)) }
        }
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        var parser = FrameParser(maxFrameSize: 1 << 24)
        var frames: [Frame] = []
        while let bytes = try channel.readOutbound(as: ByteBuffer.self) {
            try parser.consume(bytes) { frames.append($0) }
        }
        return frames
    }
}

/// The message payloads `frames` carry, in order: compressed frames inflated, batches
/// split into their frames (each checked to be an uncompressed message frame).
func messages(in frames: [Frame], inflater: Inflater = Inflater(limit: 1 << 20)) throws -> [[UInt8]] {
    var payloads: [[UInt8]] = []
    for frame in frames {
        guard frame.flags & FrameFlags.compressed != 0 else {
            payloads.append(Array(frame.payload.readableBytesView))
            continue
        }
        let inflated = try inflater.inflate(frame.payload, flags: frame.flags, allocator: ByteBufferAllocator())
        guard frame.flags & FrameFlags.batch != 0 else {
            payloads.append(Array(inflated.readableBytesView))
            continue
        }
        try FrameParser.forEachFrame(in: inflated, maxFrameSize: 1 << 20) { inner in
            #expect(inner.kind == 16 && inner.flags == 0 && inner.streamKey == 1)
            payloads.append(Array(inner.payload.readableBytesView))
        }
    }
    return payloads
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
        #expect(try messages(in: frames) == payloads)
    }

    @Test("in stream mode, messages queued while a write is held share one batch frame, which inflates to their own frames; a message under the threshold ends the batch and keeps its place; message mode never batches",
          arguments: CompressionSettings.Mode.allCases)
    func batches(mode: CompressionSettings.Mode) throws {
        let harness = OutboxHarness(CompressionSettings(level: 1, threshold: 1024, mode: mode))
        var payloads = records(6, size: 2000)
        payloads[3] = Array(payloads[3].prefix(100))
        let frames = try harness.send(payloads, together: true)
        let compressed = FrameFlags.compressed
        if mode == .stream {
            // The first goes at once; two wait in a batch; the small one ends it; two more wait.
            #expect(frames.map(\.flags) == [compressed, compressed | FrameFlags.batch, 0, compressed | FrameFlags.batch])
        } else {
            #expect(frames.map(\.flags) == [1, 1, 1, 0, 1, 1].map { $0 * (compressed | FrameFlags.independent) })
        }
        #expect(try messages(in: frames) == payloads)
    }

    @Test("a batch holds at most its limit of frame bytes, so the peer inflates it within its frame limit")
    func batchLimit() throws {
        let harness = OutboxHarness(CompressionSettings(level: 1, threshold: 1024, mode: .stream), batchLimit: 8192)
        let payloads = records(10, size: 3000)
        let frames = try harness.send(payloads, together: true)
        // The first alone, then batches of two 3010-byte frames (three would pass 8192).
        #expect(frames.count == 6)
        let inflater = Inflater(limit: 8192)
        #expect(try messages(in: frames, inflater: inflater) == payloads)
    }

    @Test("a slot counts unacknowledged messages, not frames: a batch frame counts each message it carries, a batch still open counts, and a close keeps the count of what it dropped")
    func unacknowledgedMessages() throws {
        let harness = OutboxHarness(CompressionSettings(level: 1, threshold: 1024, mode: .stream))
        let (outbox, loop) = (harness.outbox, harness.channel.embeddedEventLoop)
        let payloads = records(6, size: 2048)
        func enqueue(_ range: Range<Int>) throws {
            for payload in payloads[range] { try outbox.enqueueFrame(kind: 16, streamKey: 1, compressible: true) { $0.writeBytes(payload) } }
        }
        try enqueue(0..<1)
        loop.run()
        // Frame 0 went alone; the next three wait out the window in an open batch.
        try enqueue(1..<4)
        #expect(outbox.stats.unacknowledged == 1 && outbox.stats.unacknowledgedMessages == 4)
        loop.advanceTime(by: .microseconds(50))
        #expect(outbox.stats.unacknowledged == 2 && outbox.stats.unacknowledgedMessages == 4, "frame 1 is a batch of three")
        outbox.acknowledge(received: 1)
        #expect(outbox.stats.unacknowledgedMessages == 3)
        // A new link whose peer reports it has frame 1 too.
        outbox.detach()
        outbox.attach(EmbeddedChannel(loop: loop), peerReceived: 2)
        #expect(outbox.stats.unacknowledgedMessages == 0)
        try enqueue(4..<6)
        outbox.close(flushPending: false)
        #expect(outbox.stats.unacknowledgedMessages == 2, "the close dropped the two in the open batch")
    }

    @Test("stream mode shares the window between similar messages: fewer wire bytes than message mode")
    func streamBeatsMessage() throws {
        let data = records(200, size: 2048)
        let stream = try OutboxHarness(CompressionSettings(mode: .stream)).send(data).reduce(0) { $0 + $1.payload.readableBytes }
        let message = try OutboxHarness(CompressionSettings(mode: .message)).send(data).reduce(0) { $0 + $1.payload.readableBytes }
        #expect(stream < message)
    }

    @Test("compressed frames decode with a stock zlib (Python's), in both modes (stream mode: raw deflate, each frame once its sync-flush trailer is restored; a batch holds whole frames)",
        arguments: CompressionSettings.Mode.allCases)
    func stockZlib(mode: CompressionSettings.Mode) async throws {
        let data = records(20, size: 3000)
        let frames = try OutboxHarness(CompressionSettings(level: 1, threshold: 0, mode: mode)).send(Array(data[..<10]))
            + OutboxHarness(CompressionSettings(level: 1, threshold: 0, mode: mode)).send(Array(data[10...]), together: true)
        if mode == .stream {
            #expect(frames.allSatisfy { !$0.payload.readableBytesView.suffix(4).elementsEqual([0x00, 0x00, 0xFF, 0xFF]) }, "the trailer is not sent")
            #expect(frames.contains { $0.flags & FrameFlags.batch != 0 })
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("junction-zlib-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for (index, frame) in frames.enumerated() {
            try Data(frame.payload.readableBytesView).write(to: directory.appendingPathComponent(String(format: "%04d-%d", index, frame.flags)))
        }
        // The frames of the second harness continue a new stream.
        let script = """
            import os, sys, zlib, hashlib
            d = sys.argv[1]
            stream = zlib.decompressobj(-15)
            for index, name in enumerate(sorted(os.listdir(d))):
                if index == 10:
                    stream = zlib.decompressobj(-15)
                flags = int(name.split('-')[1])
                data = open(os.path.join(d, name), 'rb').read()
                out = zlib.decompress(data) if sys.argv[2] == 'message' else stream.decompress(data + b'\\x00\\x00\\xff\\xff')
                if flags & 4:
                    while out:
                        length = int.from_bytes(out[:4], 'big')
                        print(hashlib.sha256(out[10:4 + length]).hexdigest())
                        out = out[4 + length:]
                else:
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
