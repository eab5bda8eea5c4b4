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
    /// The prefix is stored and patched through raw pointers: ByteBuffer's integer
    /// writes each pass its exclusivity checks, which cost more than the stores.
    @inlinable
    public static func write<E: Error>(
        kind: UInt8, flags: UInt8 = 0, streamKey: UInt32, into buffer: inout ByteBuffer,
        body: (inout ByteBuffer) throws(E) -> Void
    ) throws(E) {
        let start = buffer.writerIndex
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: prefixSize) { raw in
            raw.storeBytes(of: UInt32(0), toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: kind, toByteOffset: 4, as: UInt8.self)
            raw.storeBytes(of: flags, toByteOffset: 5, as: UInt8.self)
            raw.storeBytes(of: streamKey.bigEndian, toByteOffset: 6, as: UInt32.self)
            return prefixSize
        }
        do {
            try body(&buffer)
        } catch {
            buffer.moveWriterIndex(to: start)
            throw error
        }
        let length = UInt32(buffer.writerIndex - start - 4)
        let offset = start - buffer.readerIndex
        buffer.withUnsafeMutableReadableBytes { $0.storeBytes(of: length.bigEndian, toByteOffset: offset, as: UInt32.self) }
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

/// Cuts frames out of a byte stream in place: each call hands back every complete frame
/// as a slice of the bytes it was given. Only a frame split across reads is copied, and
/// only that frame: its head waits in a buffer and takes from the next read just the bytes
/// it lacks, and the rest of that read is cut in place. The declared length is checked
/// against the limit before any allocation.
public struct FrameParser: Sendable {
    var cumulation: ByteBuffer?
    /// Largest `length` field accepted.
    public var maxFrameSize: Int

    public init(maxFrameSize: Int) {
        self.maxFrameSize = maxFrameSize
    }

    /// Calls `body` for each complete frame that `bytes` ends or holds, in order, and keeps
    /// the head of an incomplete last frame for the next call. Stops at the first error
    /// `body` throws (the bytes after that frame stay buffered).
    public mutating func consume(_ bytes: ByteBuffer, _ body: (Frame) throws -> Void) throws {
        var incoming = bytes
        defer { if incoming.readableBytes > 0 { keep(incoming) } }
        if var head = cumulation {
            cumulation = nil
            // Copying a whole read into the buffered head cost 2-5% of a receiving loop's
            // time with 1 KiB frames: take only what the frame lacks (its length first).
            while case let missing = try missingBytes(head), missing > 0 {
                guard incoming.readableBytes > 0 else {
                    keep(head)
                    return
                }
                var piece = incoming.readSlice(length: min(missing, incoming.readableBytes))!
                head.writeBuffer(&piece)
            }
            try body(try next(&head)!)
        }
        while let frame = try next(&incoming) {
            try body(frame)
        }
    }

    /// Keeps `head`, the start of a frame, in a buffer of its own sized for the whole
    /// frame once its length is known. Left in the read's buffer, the first write into it
    /// would copy it into a buffer as large as that one (64 KiB and more): an allocation
    /// and fresh pages per split frame.
    mutating func keep(_ head: ByteBuffer) {
        let whole = (try? declaredSize(head)).map { 4 + $0 } ?? 4 + Frame.headerSize
        if head.capacity <= whole {
            cumulation = head
            return
        }
        var own = ByteBufferAllocator().buffer(capacity: max(whole, head.readableBytes))
        var bytes = head
        own.writeBuffer(&bytes)
        cumulation = own
    }

    /// How many bytes `head`, the start of one frame, lacks to be whole: first those of
    /// its length field, then those the length declares.
    func missingBytes(_ head: ByteBuffer) throws(MalformedFrame) -> Int {
        guard let size = try declaredSize(head) else { return 4 - head.readableBytes }
        return 4 + size - head.readableBytes
    }

    /// The `length` field of the frame at the front of `buffer`, checked against the
    /// limit; nil until its 4 bytes are there.
    func declaredSize(_ buffer: ByteBuffer) throws(MalformedFrame) -> Int? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        let size = Int(length)
        guard size <= maxFrameSize, size >= Frame.headerSize else {
            throw MalformedFrame(length: size, limit: maxFrameSize)
        }
        return size
    }

    /// Reads one whole frame from the front of `buffer`, or nil when it is incomplete.
    func next(_ buffer: inout ByteBuffer) throws(MalformedFrame) -> Frame? {
        guard let size = try declaredSize(buffer), buffer.readableBytes >= 4 + size else { return nil }
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
        let parser = FrameParser(maxFrameSize: maxFrameSize)
        var buffer = batch
        while let frame = try parser.next(&buffer) { try body(frame) }
        guard buffer.readableBytes == 0 else { throw MalformedBatch(trailingBytes: buffer.readableBytes) }
    }

    /// Bytes received but not yet part of a whole frame.
    public var bufferedBytes: Int { cumulation?.readableBytes ?? 0 }
}
