import NIOCore

/// A message body: a term in memory, or its External Term Format bytes (version byte
/// included) as received from a peer. Encoded payloads are decoded only when a
/// receiver asks for the term, so a gateway can forward them untouched.
public enum Payload: Sendable {
    case term(Term)
    case encoded(ByteBuffer)

    /// The term, decoding it if needed.
    public func term(options: ETFDecodingOptions = .init()) throws(ETFError) -> Term {
        switch self {
        case .term(let term): return term
        case .encoded(let buffer): return try ETF.decode(buffer, options: options)
        }
    }

    /// Appends the ETF bytes (version byte included).
    @inlinable
    public func write(into buffer: inout ByteBuffer) throws(ETFError) {
        switch self {
        case .term(let term): try ETF.encode(term, into: &buffer)
        case .encoded(let bytes): buffer.writeImmutableBuffer(bytes)
        }
    }
}
