import JunctionCore
import NIOCore
import NIOEmbedded
import Testing

@testable import JunctionTransport

@Suite("Slot outbox")
struct FrameOutboxTests {
    /// Frames on the wire of `channel`: (stream key, payload size).
    func written(_ channel: EmbeddedChannel) throws -> [UInt32] {
        var parser = FrameParser(maxFrameSize: 1 << 20)
        var keys: [UInt32] = []
        while let bytes = try channel.readOutbound(as: ByteBuffer.self) { try parser.consume(bytes) { keys.append($0.streamKey) } }
        return keys
    }

    func enqueue(_ outbox: FrameOutbox, _ keys: Range<UInt32>, size: Int = 1000) throws -> Bool {
        var backedUp = false
        for key in keys {
            backedUp = try outbox.enqueueFrame(kind: 16, streamKey: key, compressible: false) { $0.writeBytes([UInt8](repeating: 1, count: size)) }
        }
        return backedUp
    }

    @Test("written frames count against the high-water mark until acknowledged, frame by frame")
    func acknowledgementsFreeSpace() throws {
        let channel = EmbeddedChannel()
        let outbox = FrameOutbox(channel: channel, peer: "test", highWaterMark: 10_000)
        #expect(try enqueue(outbox, 0..<30) == true)
        channel.embeddedEventLoop.run()
        #expect(try written(channel) == Array(0..<30))
        // One batch of 30 frames was written; the peer has 25 of them.
        outbox.acknowledge(received: 25)
        #expect(outbox.stats.unacknowledged == 5)
        #expect(try enqueue(outbox, 30..<31) == false)
        // Two more batches; one acknowledgement covers the rest of the first, all of the
        // second and part of the third, the next one all of the third.
        channel.embeddedEventLoop.run()
        #expect(try enqueue(outbox, 31..<34) == false)
        channel.embeddedEventLoop.run()
        #expect(try written(channel) == Array(30..<34))
        outbox.acknowledge(received: 32)
        #expect(outbox.stats.unacknowledged == 2)
        outbox.acknowledge(received: 34)
        #expect(outbox.stats.unacknowledged == 0)
        #expect(try enqueue(outbox, 34..<43) == false, "nine frames fit under the mark again")
    }

    @Test("a busy slot writes its next frames into the memory of a batch the peer acknowledged; a quiet slot lets that memory go")
    func acknowledgedMemoryIsReused() throws {
        let channel = EmbeddedChannel()
        let outbox = FrameOutbox(channel: channel, peer: "test", highWaterMark: 1 << 20)
        // 200 frames of about 1 KiB grow the first batch's buffer to 256 KiB. A fresh
        // buffer is sized to the batch before it: 64 KiB after a batch of ten frames.
        _ = try enqueue(outbox, 0..<200)
        channel.embeddedEventLoop.run()
        let (firstAddress, firstSize) = try #require(try channel.readOutbound(as: ByteBuffer.self)).withUnsafeReadableBytes { bytes in
            (UInt(bitPattern: bytes.baseAddress), bytes.count)
        }
        #expect(firstSize == 200 * 1010)
        // Frames wait while the peer acknowledges the first batch: the slot is busy.
        _ = try enqueue(outbox, 200..<210)
        outbox.acknowledge(received: 200)
        channel.embeddedEventLoop.run()
        #expect(try written(channel) == Array(200..<210))
        _ = try enqueue(outbox, 210..<220)
        channel.embeddedEventLoop.run()
        let third = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(third.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) } == firstAddress)
        #expect(third.capacity == 256 << 10)
        var parser = FrameParser(maxFrameSize: 1 << 20)
        var keys: [UInt32] = []
        try parser.consume(third) { keys.append($0.streamKey) }
        #expect(keys == Array(210..<220))
        // Everything acknowledged, nothing pending: no spare memory is kept.
        outbox.acknowledge(received: 220)
        #expect(outbox.state.withLock { $0.spares.isEmpty })
    }

    @Test("a new link gets the frames the peer lacks, then what waited, in order")
    func retransmitOnAttach() throws {
        let first = EmbeddedChannel()
        let outbox = FrameOutbox(channel: first, peer: "test", highWaterMark: 1 << 20)
        _ = try enqueue(outbox, 0..<10)
        first.embeddedEventLoop.run()
        #expect(try written(first).count == 10)
        outbox.acknowledge(received: 4)
        outbox.detach()
        // While detached, frames wait and the slot counts as backed up.
        #expect(try enqueue(outbox, 10..<13) == true)
        let second = EmbeddedChannel()
        outbox.attach(second, peerReceived: 7)
        second.embeddedEventLoop.run()
        #expect(try written(second) == Array(7..<13))
        #expect(outbox.stats.retransmitted == 3)
    }

    @Test("frames queued soon after a write wait out the coalescing window and share one write while the link is busy or streams one way; a frame that follows something received, or a quiet spell, goes at once")
    func writeCoalescing() throws {
        let channel = EmbeddedChannel()
        let activity = ConnectionActivity()
        let outbox = FrameOutbox(channel: channel, peer: "test", coalescing: .microseconds(50), activity: activity)
        _ = try enqueue(outbox, 0..<1)
        channel.embeddedEventLoop.run()
        #expect(try written(channel) == [0], "a lone frame is written without waiting")
        channel.embeddedEventLoop.advanceTime(by: .microseconds(10))
        activity.noteDelivery()
        _ = try enqueue(outbox, 1..<2)
        channel.embeddedEventLoop.run()
        #expect(try written(channel) == [1], "after something came in (an answer, a call) the next frame goes at once")
        channel.embeddedEventLoop.advanceTime(by: .microseconds(10))
        _ = try enqueue(outbox, 2..<3)
        channel.embeddedEventLoop.run()
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil, "a one-way stream's next frame 10 us after a write waits for the window")
        _ = try enqueue(outbox, 3..<4)
        channel.embeddedEventLoop.advanceTime(by: .microseconds(40))
        #expect(try written(channel) == [2, 3], "and shares its write with what followed")
        channel.embeddedEventLoop.advanceTime(by: .microseconds(10))
        activity.noteDelivery()
        _ = try enqueue(outbox, 4..<7)
        channel.embeddedEventLoop.run()
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil, "after a write of two (a busy link) frames wait for the window even after a delivery")
        channel.embeddedEventLoop.advanceTime(by: .microseconds(40))
        #expect(try written(channel) == [4, 5, 6])
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        _ = try enqueue(outbox, 7..<8)
        channel.embeddedEventLoop.run()
        #expect(try written(channel) == [7], "after a quiet spell the frame goes at once")
    }
}
