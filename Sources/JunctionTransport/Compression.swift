import CZlib
import JunctionCore
import NIOCore

/// Frame flag bits.
public enum FrameFlags {
    /// The payload is compressed.
    public static let compressed: UInt8 = 1 << 0
    /// The compressed payload is a complete zlib stream of its own (`message` mode);
    /// without this bit it continues the link direction's raw deflate stream (`stream`
    /// mode: the stream never ends, so a zlib header and checksum would be dead weight).
    public static let independent: UInt8 = 1 << 1
    /// The payload (compressed, `stream` mode) is a batch: inflated, it is a sequence of
    /// whole message frames, each with its own kind and stream key and no flags. The
    /// messages a slot queues while its write is held share one sync flush, so zlib codes
    /// them as one block instead of one block each (BENCHMARKS.md).
    public static let batch: UInt8 = 1 << 2
}

/// The four bytes that end every sync flush (an empty stored block's length and its
/// complement). A `stream`-mode frame leaves them out and the receiver restores them
/// before inflating, as WebSocket's permessage-deflate does (RFC 7692): 4 bytes a frame.
let syncFlushTrailer: [UInt8] = [0x00, 0x00, 0xFF, 0xFF]
/// The trailer where zlib can read it during any inflate.
nonisolated(unsafe) let syncFlushTrailerBytes: UnsafeMutablePointer<Bytef> = {
    let bytes = UnsafeMutablePointer<Bytef>.allocate(capacity: syncFlushTrailer.count)
    bytes.initialize(from: syncFlushTrailer, count: syncFlushTrailer.count)
    return bytes
}()

/// Why a compressed payload was refused.
public struct CompressionError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The deflate side of one link direction. Not thread-safe: its owner serializes use.
public final class Deflater {
    let stream: UnsafeMutablePointer<z_stream>
    public let settings: CompressionSettings
    var scratch: [UInt8] = []
    /// Payload bytes compressed, and the compressed bytes they became.
    public private(set) var bytesIn = 0
    public private(set) var bytesOut = 0
    /// Bytes added to the open batch, and its compressed bytes so far (in `scratch`).
    public private(set) var batchInput = 0
    var batchOutput = 0

    public init(settings: CompressionSettings) {
        self.settings = settings
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let status = junction_deflateInit2(stream, settings.level, settings.mode == .stream ? -15 : 15)
        precondition(status == Z_OK, "deflateInit failed (status \(status)): out of memory")
        tune()
    }

    /// At level 1, zlib stops looking for a longer match at 8 bytes (`nice_length`);
    /// messages repeat runs of keys and values longer than that, within a message and
    /// from one message to the next, so level 1 here looks on to 12 bytes, keeping level
    /// 1's short hash chains: on the bench's JSON records, 4% fewer bytes in `stream`
    /// mode and 2% in `message` mode, for 0-2% of deflate's speed (BENCHMARKS.md).
    /// (`deflateReset` restores the level's table, so a reset is followed by this.)
    func tune() {
        guard settings.level == 1 else { return }
        deflateTune(stream, 4, 4, 12, 4)
    }

    deinit {
        deflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// The flag bits of a frame this deflater compressed.
    public var flags: UInt8 {
        FrameFlags.compressed | (settings.mode == .message ? FrameFlags.independent : 0)
    }

    /// Compresses `input` and hands `body` the compressed bytes (valid only during the
    /// call) with the flag bits to set on the frame. No batch may be open.
    public func compress<Result, Failure: Error>(
        _ input: UnsafeRawBufferPointer, _ body: (_ compressed: UnsafeRawBufferPointer, _ flags: UInt8) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        precondition(batchInput == 0, "a batch is open: finish it before compressing a frame of its own")
        let independent = settings.mode == .message
        if independent {
            deflateReset(stream)
            tune()
        }
        let bound = Int(deflateBound(stream, uLong(input.count))) + 16
        if scratch.count < bound { scratch = [UInt8](repeating: 0, count: bound) }
        let produced = scratch.withUnsafeMutableBytes { output in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.pointee.avail_in = uInt(input.count)
            stream.pointee.next_out = output.baseAddress?.assumingMemoryBound(to: Bytef.self)
            stream.pointee.avail_out = uInt(output.count)
            let status = deflate(stream, independent ? Z_FINISH : Z_SYNC_FLUSH)
            precondition(status == (independent ? Z_STREAM_END : Z_OK), "deflate into deflateBound bytes must complete (status \(status))")
            let produced = output.count - Int(stream.pointee.avail_out)
            guard !independent else { return produced }
            precondition(produced >= 4 && output[(produced - 4)..<produced].elementsEqual(syncFlushTrailer), "a sync flush ends with 00 00 ff ff")
            return produced - 4
        }
        bytesIn += input.count
        bytesOut += produced
        return try handOut(produced, flags: flags, body)
    }

    /// Deflates `input` into the open batch (opening one), without a flush: zlib may
    /// keep some of it until `finishBatch`. `stream` mode only.
    public func addToBatch(_ input: UnsafeRawBufferPointer) {
        precondition(settings.mode == .stream, "only a stream-mode deflater batches")
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.pointee.avail_in = uInt(input.count)
        deflateIntoBatch(flush: Z_NO_FLUSH)
        batchInput += input.count
    }

    /// Ends the open batch with a sync flush and hands `body` its compressed bytes
    /// (valid only during the call) with the flag bits to set on the batch frame.
    public func finishBatch<Result, Failure: Error>(
        _ body: (_ compressed: UnsafeRawBufferPointer, _ flags: UInt8) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        precondition(batchInput > 0, "no batch is open")
        stream.pointee.avail_in = 0
        deflateIntoBatch(flush: Z_SYNC_FLUSH)
        let produced = batchOutput
        scratch.withUnsafeBytes { output in
            precondition(produced >= 4 && output[(produced - 4)..<produced].elementsEqual(syncFlushTrailer), "a sync flush ends with 00 00 ff ff")
        }
        bytesIn += batchInput
        bytesOut += produced - 4
        batchInput = 0
        batchOutput = 0
        return try handOut(produced - 4, flags: flags | FrameFlags.batch, body)
    }

    /// Runs deflate until it has taken all input and, for a flush, written all output,
    /// appending to the batch's bytes in `scratch` (grown as needed).
    private func deflateIntoBatch(flush: Int32) {
        while true {
            let wanted = batchOutput + Int(stream.pointee.avail_in) + 64
            if scratch.count < wanted { scratch.append(contentsOf: repeatElement(0, count: max(wanted, 2 * scratch.count) - scratch.count)) }
            let room = scratch.count - batchOutput
            let status = scratch.withUnsafeMutableBytes { output in
                stream.pointee.next_out = output.baseAddress!.advanced(by: batchOutput).assumingMemoryBound(to: Bytef.self)
                stream.pointee.avail_out = uInt(room)
                return deflate(stream, flush)
            }
            precondition(status == Z_OK || status == Z_BUF_ERROR, "deflate into a buffer with room must succeed (status \(status))")
            batchOutput += room - Int(stream.pointee.avail_out)
            if stream.pointee.avail_in == 0 && stream.pointee.avail_out > 0 { return }
        }
    }

    private func handOut<Result, Failure: Error>(
        _ count: Int, flags: UInt8, _ body: (_ compressed: UnsafeRawBufferPointer, _ flags: UInt8) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try scratch.withUnsafeBytes { (output) -> Swift.Result<Result, Failure> in
            do throws(Failure) {
                return .success(try body(UnsafeRawBufferPointer(rebasing: output.prefix(count)), flags))
            } catch {
                return .failure(error)
            }
        }.get()
    }
}

/// The inflate side of one link direction: a context continuing the direction's stream,
/// and one reset per independent payload. Output is bounded by `limit`, so a
/// decompression bomb is an error, never an allocation.
public final class Inflater {
    var streaming: UnsafeMutablePointer<z_stream>?
    var independent: UnsafeMutablePointer<z_stream>?
    let limit: Int

    public init(limit: Int) {
        self.limit = limit
    }

    deinit {
        for stream in [streaming, independent].compactMap({ $0 }) {
            inflateEnd(stream)
            stream.deinitialize(count: 1)
            stream.deallocate()
        }
    }

    /// A context for zlib streams (`message` mode) or, `raw`, the raw deflate of `stream` mode.
    static func makeStream(raw: Bool) -> UnsafeMutablePointer<z_stream> {
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let status = junction_inflateInit2(stream, raw ? -15 : 15)
        precondition(status == Z_OK, "inflateInit failed (status \(status)): out of memory")
        return stream
    }

    /// Inflates a frame payload compressed with `flags`.
    public func inflate(_ payload: ByteBuffer, flags: UInt8, allocator: ByteBufferAllocator) throws(CompressionError) -> ByteBuffer {
        let isIndependent = flags & FrameFlags.independent != 0
        let stream: UnsafeMutablePointer<z_stream>
        if isIndependent {
            if independent == nil { independent = Self.makeStream(raw: false) } else { inflateReset(independent!) }
            stream = independent!
        } else {
            if streaming == nil { streaming = Self.makeStream(raw: true) }
            stream = streaming!
        }
        var output = allocator.buffer(capacity: min(limit + 1, max(4096, payload.readableBytes * 4)))
        let limit = self.limit
        let bomb = CompressionError("a compressed frame inflates past the maximum message size of \(limit) bytes (a decompression bomb?)")
        let result: Result<Void, CompressionError> = payload.withUnsafeReadableBytes { input in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.pointee.avail_in = uInt(input.count)
            var trailerRestored = isIndependent
            while true {
                // One byte past the limit is allowed into the buffer, to detect a bomb.
                let room = limit + 1 - output.writerIndex
                guard room > 0 else { return .failure(bomb) }
                if output.writableBytes == 0 { output.reserveCapacity(minimumWritableBytes: min(max(output.capacity, 4096), room)) }
                let (status, _): (Int32, Int) = output.writeWithUnsafeMutableBytes(minimumWritableBytes: 0) { out in
                    let space = min(out.count, room)
                    stream.pointee.next_out = out.baseAddress?.assumingMemoryBound(to: Bytef.self)
                    stream.pointee.avail_out = uInt(space)
                    let status = CZlib.inflate(stream, Z_SYNC_FLUSH)
                    return (status, space - Int(stream.pointee.avail_out))
                }
                guard output.writerIndex <= limit else { return .failure(bomb) }
                switch status {
                case Z_STREAM_END:
                    return isIndependent ? .success(()) : .failure(CompressionError("a stream-mode frame ended its zlib stream"))
                case Z_OK, Z_BUF_ERROR:
                    if stream.pointee.avail_in == 0 && stream.pointee.avail_out > 0 {
                        if !trailerRestored {
                            trailerRestored = true
                            stream.pointee.next_in = syncFlushTrailerBytes
                            stream.pointee.avail_in = uInt(syncFlushTrailer.count)
                            continue
                        }
                        return isIndependent ? .failure(CompressionError("an independent compressed frame is truncated")) : .success(())
                    }
                default:
                    let message = stream.pointee.msg.map { String(cString: $0) } ?? "status \(status)"
                    return .failure(CompressionError("a compressed frame is not valid zlib data: \(message)"))
                }
            }
        }
        try result.get()
        return output
    }
}

extension ByteBuffer {
    /// `writeWithUnsafeMutableBytes` returning a value alongside the written count.
    @inlinable
    mutating func writeWithUnsafeMutableBytes<T>(minimumWritableBytes: Int, _ body: (UnsafeMutableRawBufferPointer) -> (T, Int)) -> (T, Int) {
        var value: T?
        let written = writeWithUnsafeMutableBytes(minimumWritableBytes: minimumWritableBytes) { pointer in
            let (result, count) = body(pointer)
            value = result
            return count
        }
        return (value!, written)
    }
}
