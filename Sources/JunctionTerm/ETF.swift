import NIOCore

/// Standalone External Term Format terms: the version byte 131, then one term.
public enum ETF {
    /// Appends `131` and the term.
    public static func encode(_ term: Term, into buffer: inout ByteBuffer) throws(ETFError) {
        try ETFEncoder.write(term, into: &buffer, versioned: true)
    }

    /// The term as bytes, like `term_to_binary/1`; with a compression level, like
    /// `term_to_binary(T, [{compressed, Level}])`: tag 80 when that is smaller.
    public static func encode(_ term: Term, compressionLevel: Int32? = nil) throws(ETFError) -> [UInt8] {
        var buffer = ByteBuffer()
        try ETFEncoder.write(term, into: &buffer)
        let plain = buffer.readableBytesView
        if let level = compressionLevel {
            let compressed = plain.withUnsafeBytes { Zlib.deflate($0, level: level) }
            if compressed.count + 5 < plain.count {
                var out: [UInt8] = [ETFTag.version, ETFTag.compressed]
                out.reserveCapacity(compressed.count + 6)
                withUnsafeBytes(of: UInt32(plain.count).bigEndian) { out.append(contentsOf: $0) }
                out.append(contentsOf: compressed)
                return out
            }
        }
        return [ETFTag.version] + plain
    }

    /// Decodes a whole standalone term; trailing bytes are an error.
    public static func decode(_ bytes: [UInt8], options: ETFDecodingOptions = .init()) throws(ETFError) -> Term {
        try bytes.withUnsafeBytes { raw in Result { () throws(ETFError) in try decode(raw, options: options) } }.get()
    }

    /// Decodes the readable bytes of `buffer` as one whole standalone term.
    public static func decode(_ buffer: ByteBuffer, options: ETFDecodingOptions = .init()) throws(ETFError) -> Term {
        try buffer.withUnsafeReadableBytes { (raw) throws(ETFError) -> Term in try decode(raw, options: options) }
    }

    /// Decodes `raw` as one whole standalone term.
    public static func decode(_ raw: UnsafeRawBufferPointer, options: ETFDecodingOptions = .init()) throws(ETFError) -> Term {
        var decoder = ETFDecoder(bytes: raw, options: options)
        try decoder.readVersion()
        let term = try decoder.decodeTerm()
        try decoder.expectEnd()
        return term
    }

    /// Whether an encoded term (version byte included) holds pids, references, ports or
    /// funs: what a gateway must map before passing it on. Throws if it is malformed.
    public static func holdsIdentities(_ buffer: ByteBuffer) throws(ETFError) -> Bool {
        try buffer.withUnsafeReadableBytes { (raw) throws(ETFError) -> Bool in
            var decoder = ETFDecoder(bytes: raw)
            try decoder.readVersion()
            try decoder.skipTerm()
            try decoder.expectEnd()
            return decoder.identities > 0
        }
    }

    /// Checks that `buffer` holds exactly one well-formed standalone term, without
    /// building it.
    public static func validate(_ buffer: ByteBuffer, options: ETFDecodingOptions = .init()) throws(ETFError) {
        try buffer.withUnsafeReadableBytes { (raw) throws(ETFError) in
            var decoder = ETFDecoder(bytes: raw, options: options)
            try decoder.readVersion()
            try decoder.skipTerm()
            try decoder.expectEnd()
        }
    }
}
