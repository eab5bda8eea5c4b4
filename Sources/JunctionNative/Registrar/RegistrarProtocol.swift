import JunctionCore
import JunctionTerm
import JunctionTransport
import NIOCore

/// The embedded registrar's wire protocol: frames (the native frame format) whose
/// payloads are ETF terms.
///
/// - register: `{register, Alive, Port, Tls, HandshakeVersion, ProtocolVersion}` ->
///   `ok` | `{error, Text}`; the registration lasts as long as that connection.
/// - resolve: `{resolve, Alive}` -> `{ok, Port, Tls, HandshakeVersion, ProtocolVersion}`
///   | `{error, not_found}`.
enum RegistrarMessage {
    static let request: UInt8 = 1
    static let response: UInt8 = 2
    static let maxFrameSize = 4096

    static func frame(_ term: Term) -> ByteBuffer {
        var buffer = ByteBuffer()
        // Registrar terms are small and built from checked values: encoding cannot fail.
        try! Frame.write(kind: request, streamKey: 0, into: &buffer) { (buffer) throws(ETFError) in
            try ETF.encode(term, into: &buffer)
        }
        return buffer
    }

    static func response(_ term: Term) -> ByteBuffer {
        var buffer = frame(term)
        buffer.setInteger(Self.response, at: buffer.readerIndex + 4)
        return buffer
    }
}

/// A registration as the registrar keeps it.
struct Registration: Sendable, Hashable {
    var port: Int
    var tls: Bool
    var handshakeVersion: Int
    var protocolVersion: Int

    var term: Term {
        .tuple([.int(port), .atom(tls ? .true : .false), .int(handshakeVersion), .int(protocolVersion)])
    }

    init(port: Int, tls: Bool, handshakeVersion: Int, protocolVersion: Int) {
        self.port = port
        self.tls = tls
        self.handshakeVersion = handshakeVersion
        self.protocolVersion = protocolVersion
    }

    /// Reads `Port, Tls, Hs, Proto` from `elements`.
    init?(_ elements: ArraySlice<Term>) {
        guard elements.count == 4 else { return nil }
        let values = Array(elements)
        guard case .int(let port) = values[0], (1...65535).contains(port), case .atom(let tls) = values[1],
            case .int(let handshake) = values[2], case .int(let proto) = values[3]
        else { return nil }
        self.init(port: port, tls: tls == .true, handshakeVersion: handshake, protocolVersion: proto)
    }
}

/// A registrar request that failed, with what to do about it.
public struct RegistrarError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
