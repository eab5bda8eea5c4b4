import CZlib

/// One-shot zlib deflate and bounded inflate over the system libz.
public enum Zlib {
    public enum Failure: Error, Sendable, Hashable {
        /// The stream inflated to a different size than declared ("more than N" when it
        /// would have grown past the declared size).
        case sizeMismatch(actual: String)
        case library(String)
    }

    public struct InflateResult: Sendable {
        public var output: [UInt8]
        /// Input bytes the zlib stream occupied.
        public var consumed: Int
    }

    /// Compresses `input` into one complete zlib stream.
    public static func deflate(_ input: UnsafeRawBufferPointer, level: Int32) -> [UInt8] {
        var stream = z_stream()
        guard junction_deflateInit(&stream, level) == Z_OK else { preconditionFailure("deflateInit failed: out of memory") }
        defer { deflateEnd(&stream) }
        let bound = Int(deflateBound(&stream, uLong(input.count)))
        var output = [UInt8](repeating: 0, count: bound)
        let written: Int = output.withUnsafeMutableBytes { out in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(input.count)
            stream.next_out = out.baseAddress?.assumingMemoryBound(to: Bytef.self)
            stream.avail_out = uInt(out.count)
            let status = CZlib.deflate(&stream, Z_FINISH)
            precondition(status == Z_STREAM_END, "deflate into deflateBound bytes must finish")
            return out.count - Int(stream.avail_out)
        }
        output.removeLast(output.count - written)
        return output
    }

    /// Inflates one zlib stream from the start of `input`, which must produce exactly
    /// `exactSize` bytes; it never writes more than that, so a bomb costs nothing.
    public static func inflate(_ input: UnsafeRawBufferPointer, exactSize: Int) throws(Failure) -> InflateResult {
        var stream = z_stream()
        guard junction_inflateInit(&stream) == Z_OK else { throw .library("inflateInit failed") }
        defer { inflateEnd(&stream) }
        // One spare byte detects a stream that inflates past the declared size.
        var output = [UInt8](repeating: 0, count: exactSize + 1)
        let status: Int32 = output.withUnsafeMutableBytes { out in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(input.count)
            stream.next_out = out.baseAddress?.assumingMemoryBound(to: Bytef.self)
            stream.avail_out = uInt(out.count)
            return CZlib.inflate(&stream, Z_FINISH)
        }
        let produced = Int(stream.total_out)
        switch status {
        case Z_STREAM_END:
            guard produced == exactSize else { throw .sizeMismatch(actual: "\(produced) bytes") }
        case Z_OK, Z_BUF_ERROR:
            if stream.avail_out == 0 { throw .sizeMismatch(actual: "more than \(exactSize) bytes") }
            throw .library("the stream ends early (truncated)")
        default:
            let message = stream.msg.map { String(cString: $0) } ?? "status \(status)"
            throw .library(input.isEmpty ? "no data" : message)
        }
        output.removeLast()
        return InflateResult(output: output, consumed: Int(stream.total_in))
    }
}
