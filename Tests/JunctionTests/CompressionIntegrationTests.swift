import Foundation
import JunctionCore
import JunctionNative
import JunctionTerm
import JunctionTransport
import NIOCore
import Testing

@testable import Junction

/// Distinct JSON-like records, as binaries.
func jsonRecords(_ count: Int, size: Int) -> [Term] {
    (0..<count).map { index in
        var text = ""
        var field = 0
        while text.utf8.count < size {
            text += "{\"id\":\(index * 31 + field),\"user\":\"u\(index % 13)-\(field)\",\"ok\":\(field % 3 == 0)},"
            field += 1
        }
        return .binary(Array(text.utf8.prefix(size)))
    }
}

@Suite("Compression between nodes")
struct CompressionIntegrationTests {
    @Test("large messages arrive intact in order with compression in either mode", arguments: ["stream", "message"])
    func compressedTraffic(mode: String) async throws {
        let registrar = try await startRegistrar()
        let extra = "compression: {level: 1, threshold: 1024, mode: \(mode)}"
        let a = try await startNode(try nodeConfig("a@localhost", stacks: [("native", registrar.port)], stackExtra: extra))
        let b = try await startNode(try nodeConfig("b@localhost", stacks: [("native", registrar.port)], stackExtra: extra))
        let sink = try b.spawn(name: "sink")
        let sender = try a.spawn()
        let messages = jsonRecords(300, size: 2048) + [.atom("small"), .binary([UInt8](repeating: 7, count: 1025))]
        for message in messages { try await sender.send(message, to: .name("sink", on: "b@localhost")) }
        for message in messages { #expect(try await sink.receive(timeout: .seconds(10)).term() == message) }
        #expect(a.connection(to: "b@localhost")?.compression?.mode.rawValue == mode)
        await a.shutdown()
        await b.shutdown()
        await registrar.shutdown()
    }

    @Test("senders sharing one slot's deflater, each to its own receiver, get every message through once and in order", arguments: ["stream", "message"])
    func sharedDeflater(mode: String) async throws {
        let registrar = try await startRegistrar()
        let extra = "compression: {level: 1, threshold: 1024, mode: \(mode)}"
        // One link: every pair uses the same slot, so senders find its deflater busy
        // and hand their frames over.
        let a = try await startNode(try nodeConfig("a@localhost", stacks: [("native", registrar.port)], stackExtra: extra, poolSize: 1))
        let b = try await startNode(try nodeConfig("b@localhost", stacks: [("native", registrar.port)], stackExtra: extra, poolSize: 1))
        let pairs = 4
        let perPair = 1500
        let records = jsonRecords(64, size: 2048)
        let sinks = try (0..<pairs).map { try b.spawn(name: "sink\($0)") }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for pair in 0..<pairs {
                let sender = try a.spawn()
                group.addTask {
                    for index in 0..<perPair {
                        let message = Term.tuple([.int(index), records[(pair + index) % records.count]])
                        try await sender.send(message, to: .name("sink\(pair)", on: "b@localhost"))
                    }
                    try await sender.send(.atom("done"), to: .name("sink\(pair)", on: "b@localhost"))
                }
            }
            for (pair, sink) in sinks.enumerated() {
                group.addTask {
                    for index in 0..<perPair {
                        let received = try await sink.receive(timeout: .seconds(20)).term()
                        #expect(received == .tuple([.int(index), records[(pair + index) % records.count]]), "pair \(pair), message \(index)")
                    }
                    // Nothing twice: the pair's last message comes right after.
                    #expect(try await sink.receive(timeout: .seconds(20)).term() == .atom("done"))
                }
            }
            try await group.waitForAll()
        }
        await a.shutdown()
        await b.shutdown()
        await registrar.shutdown()
    }

    @Test("when one side turns compression off, neither side compresses and messages still flow")
    func mismatch() async throws {
        let registrar = try await startRegistrar()
        let a = try await startNode(try nodeConfig("a@localhost", stacks: [("native", registrar.port)], stackExtra: "compression: {enabled: false}"))
        let b = try await startNode(try nodeConfig("b@localhost", stacks: [("native", registrar.port)]))
        let sink = try b.spawn(name: "sink")
        let sender = try a.spawn()
        let message = jsonRecords(1, size: 4096)[0]
        try await sender.send(message, to: .name("sink", on: "b@localhost"))
        #expect(try await sink.receive(timeout: .seconds(10)).term() == message)
        #expect(a.connection(to: "b@localhost")?.compression == nil)
        #expect(b.connection(to: "a@localhost")?.compression == nil)
        await a.shutdown()
        await b.shutdown()
        await registrar.shutdown()
    }

    @Test("a decompression bomb closes that link with a clear error and the node keeps serving")
    func bomb() async throws {
        let registrar = try await startRegistrar()
        let logs = LogCapture()
        let node = try await startNode(
            try nodeConfig("target@localhost", stacks: [("native", registrar.port)], stackExtra: "maxMessageSize: 1048576"), logger: logs.logger)
        let echo = try node.spawn(name: "echo")
        let service = Task { try await EchoService.run(echo) }
        let address = try #require(node.listening["native"]?.first)
        let peer = try await RawPeer.connect(to: address, as: "bomber@localhost", target: "target@localhost", cookie: "test-cookie", flags: [.compression])

        // 8 MiB of zeros, about 8 KiB deflated, in one frame flagged as compressed.
        let zeros = [UInt8](repeating: 0, count: 8 << 20)
        let deflated = zeros.withUnsafeBytes { Zlib.deflate($0, level: 9) }
        var frame = ByteBuffer()
        Frame.write(
            kind: NativeFrameKind.sendName, flags: FrameFlags.compressed | FrameFlags.independent, streamKey: 1, payload: ByteBuffer(bytes: deflated),
            into: &frame)
        try await peer.write(frame)
        try await peer.channel.closeFuture.get()
        #expect(logs.contains("decompression bomb"))

        try await expectStillServes("target@localhost", registrarPort: registrar.port)
        service.cancel()
        await node.shutdown()
        await registrar.shutdown()
    }

    @Test("a batch frame holding anything but whole uncompressed message frames closes that link with a clear error and the node keeps serving",
          arguments: ["a close frame inside", "a truncated frame inside"])
    func malformedBatch(content: String) async throws {
        let registrar = try await startRegistrar()
        let logs = LogCapture()
        let node = try await startNode(try nodeConfig("target@localhost", stacks: [("native", registrar.port)]), logger: logs.logger)
        let echo = try node.spawn(name: "echo")
        let service = Task { try await EchoService.run(echo) }
        let address = try #require(node.listening["native"]?.first)
        let peer = try await RawPeer.connect(to: address, as: "batcher@localhost", target: "target@localhost", cookie: "test-cookie", flags: [.compression])

        var inner = ByteBuffer()
        if content == "a close frame inside" {
            Frame.write(kind: NativeFrameKind.close, streamKey: 1, payload: ByteBuffer(), into: &inner)
        } else {
            Frame.write(kind: NativeFrameKind.sendName, streamKey: 1, payload: ByteBuffer(bytes: [UInt8](repeating: 1, count: 2000)), into: &inner)
            inner.moveWriterIndex(to: inner.writerIndex - 10)
        }
        let deflater = Deflater(settings: CompressionSettings(level: 1, threshold: 0, mode: .stream))
        inner.withUnsafeReadableBytes { deflater.addToBatch($0) }
        var frame = ByteBuffer()
        deflater.finishBatch { compressed, flags in
            Frame.write(kind: NativeFrameKind.sendName, flags: flags, streamKey: 1, payload: ByteBuffer(bytes: compressed), into: &frame)
        }
        try await peer.write(frame)
        try await peer.channel.closeFuture.get()
        #expect(logs.contains(content == "a close frame inside" ? "a batch holds uncompressed message frames only" : "are not a whole frame"))

        try await expectStillServes("target@localhost", registrarPort: registrar.port)
        service.cancel()
        await node.shutdown()
        await registrar.shutdown()
    }
}
