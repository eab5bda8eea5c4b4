import NIOCore

/// One frame on a link: `u32 length | u8 kind | u8 flags | u32 stream key | payload`,
/// where `length` counts everything after itself. The stream key names the
/// (sender, receiver) pair, so a link pool can keep each pair's frames on one slot.
public struct Frame: Sendable {
    /// Bytes of the header after the length field: kind, flags, stream key.
    public static let headerSize = 6
    /// Bytes of the whole fixed prefix, length field included.
    public static let prefixSize = 10

    public var kind: UInt8
    public var flags: UInt8
    public var streamKey: UInt32
    /// The payload, a slice of the receive buffer (no copy).
    public var payload: ByteBuffer

    public init(kind: UInt8, flags: UInt8 = 0, streamKey: UInt32 = 0, payload: ByteBuffer) {
        self.kind = kind
        self.flags = flags
        self.streamKey = streamKey
        self.payload = payload
    }

    /// Appends one frame whose payload `body` writes; the length is patched afterwards,
    /// so the payload is encoded once, in place. On a thrown error nothing is appended.
    @inlinable
    public static func write<E: Error>(
        kind: UInt8, flags: UInt8 = 0, streamKey: UInt32, into buffer: inout ByteBuffer,
        body: (inout ByteBuffer) throws(E) -> Void
    ) throws(E) {
        let start = buffer.writerIndex
        buffer.writeMultipleIntegers(UInt32(0), kind, flags, streamKey)
        do {
            try body(&buffer)
        } catch {
            buffer.moveWriterIndex(to: start)
            throw error
        }
        let length = UInt32(buffer.writerIndex - start - 4)
        buffer.setInteger(length, at: start)
    }

    /// Appends one frame with the given payload bytes.
    public static func write(kind: UInt8, flags: UInt8 = 0, streamKey: UInt32 = 0, payload: ByteBuffer, into buffer: inout ByteBuffer) {
        buffer.writeMultipleIntegers(UInt32(headerSize + payload.readableBytes), kind, flags, streamKey)
        buffer.writeImmutableBuffer(payload)
    }
}

/// A frame header that cannot be accepted, found before reading the frame's body.
public struct MalformedFrame: Error, Sendable, CustomStringConvertible {
    public let length: Int
    public let limit: Int
    public var description: String {
        if length < Frame.headerSize {
            return "a peer sent a frame whose length \(length) is shorter than the \(Frame.headerSize)-byte header: it does not speak Junction's protocol"
        }
        return "a peer sent a frame of \(length) bytes, above the limit of \(limit); raise maxMessageSize on both sides if such messages are expected"
    }
}

/// A batch frame whose inflated payload ends inside a frame.
public struct MalformedBatch: Error, Sendable, CustomStringConvertible {
    public let trailingBytes: Int
    public var description: String {
        "a peer sent a batch frame whose last \(trailingBytes) bytes are not a whole frame: its sender is faulty"
    }
}

/// Cuts frames out of a byte stream in place. Bytes accumulate in one buffer; each
/// call hands back every complete frame as a slice of it. The declared length is
/// checked against the limit before any allocation.
public struct FrameParser: Sendable {
    var cumulation: ByteBuffer?
    /// Largest `length` field accepted.
    public var maxFrameSize: Int

    public init(maxFrameSize: Int) {
        self.maxFrameSize = maxFrameSize
    }

    /// Appends `bytes` and calls `body` for each complete frame, in order. Stops at the
    /// first error `body` throws (the remaining bytes stay buffered).
    public mutating func consume(_ bytes: ByteBuffer, _ body: (Frame) throws -> Void) throws {
        if cumulation == nil || cumulation!.readableBytes == 0 {
            cumulation = bytes
        } else {
            var incoming = bytes
            cumulation!.writeBuffer(&incoming)
        }
        var buffer = cumulation!
        cumulation = nil
        defer {
            if buffer.readableBytes > 0 {
                buffer.discardReadBytes()
                cumulation = buffer
            }
        }
        while let frame = try next(&buffer) {
            try body(frame)
        }
    }

    /// Reads one whole frame from the front of `buffer`, or nil when it is incomplete.
    func next(_ buffer: inout ByteBuffer) throws(MalformedFrame) -> Frame? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        let size = Int(length)
        guard size <= maxFrameSize, size >= Frame.headerSize else {
            throw MalformedFrame(length: size, limit: maxFrameSize)
        }
        guard buffer.readableBytes >= 4 + size else { return nil }
        let start = buffer.readerIndex
        let kind = buffer.getInteger(at: start + 4, as: UInt8.self)!
        let flags = buffer.getInteger(at: start + 5, as: UInt8.self)!
        let streamKey = buffer.getInteger(at: start + 6, as: UInt32.self)!
        let payload = buffer.getSlice(at: start + Frame.prefixSize, length: size - Frame.headerSize)!
        buffer.moveReaderIndex(forwardBy: 4 + size)
        return Frame(kind: kind, flags: flags, streamKey: streamKey, payload: payload)
    }

    /// Calls `body` for each frame of `batch`, which must hold whole frames only (an
    /// inflated batch frame's payload).
    public static func forEachFrame(in batch: ByteBuffer, maxFrameSize: Int, _ body: (Frame) throws -> Void) throws {
        var parser = FrameParser(maxFrameSize: maxFrameSize)
        var buffer = batch
        while let frame = try parser.next(&buffer) { try body(frame) }
        guard buffer.readableBytes == 0 else { throw MalformedBatch(trailingBytes: buffer.readableBytes) }
    }

    /// Bytes received but not yet part of a whole frame.
    public var bufferedBytes: Int { cumulation?.readableBytes ?? 0 }
}
