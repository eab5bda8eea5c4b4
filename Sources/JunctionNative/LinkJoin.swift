import Crypto
import JunctionTransport
import NIOCore

/// How an extra link joins an established connection (DESIGN.md "Links"): its first
/// frame names the connection and the slot, carries a counter that must grow with
/// every join of that connection (so a recorded join cannot be replayed) and how many
/// frames of that slot the joiner has received; an HMAC keyed by the connection's
/// session key proves it. The acceptor answers with its own received count, proved
/// the same way, and each side writes again what the other has not received.
public enum LinkJoin {
    public struct Request: Sendable, Hashable {
        public var connectionID: UInt64
        public var slot: Int
        public var counter: UInt64
        /// Frames of this slot the joiner has received.
        public var received: UInt64
        var mac: [UInt8]

        /// True when the HMAC matches `sessionKey`.
        public func isAuthentic(sessionKey: [UInt8]) -> Bool {
            NativeHandshake.constantTimeEqual(mac, LinkJoin.mac("junction-join", connectionID, slot, counter, received, sessionKey: sessionKey))
        }
    }

    static func mac(_ label: String, _ connectionID: UInt64, _ slot: Int, _ counter: UInt64, _ received: UInt64, sessionKey: [UInt8]) -> [UInt8] {
        var message = Array(label.utf8)
        for value in [connectionID, UInt64(slot), counter, received] {
            withUnsafeBytes(of: value.bigEndian) { message += $0 }
        }
        return Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: sessionKey)))
    }

    /// The join frame for `request`.
    public static func frame(_ request: Request) -> ByteBuffer {
        var buffer = ByteBuffer()
        Frame.write(kind: NativeFrameKind.join, streamKey: 0, into: &buffer) { buffer in
            buffer.writeBytes(NativeHandshake.magic)
            buffer.writeMultipleIntegers(request.connectionID, UInt8(request.slot), request.counter, request.received)
            buffer.writeBytes(request.mac)
        }
        return buffer
    }

    /// Reads a join frame's payload; nil when it is not one.
    public static func parseRequest(_ payload: ByteBuffer) -> Request? {
        var payload = payload
        guard payload.readBytes(length: 4) == NativeHandshake.magic,
            let (connectionID, slot, counter, received) = payload.readMultipleIntegers(as: (UInt64, UInt8, UInt64, UInt64).self),
            let mac = payload.readBytes(length: 32)
        else { return nil }
        return Request(connectionID: connectionID, slot: Int(slot), counter: counter, received: received, mac: mac)
    }

    /// The acceptor's answer to `request`.
    public static func accept(_ request: Request, received: UInt64, sessionKey: [UInt8]) -> ByteBuffer {
        var buffer = ByteBuffer()
        Frame.write(kind: NativeFrameKind.joinAccept, streamKey: 0, into: &buffer) { buffer in
            buffer.writeInteger(received)
            buffer.writeBytes(mac("junction-join-ok", request.connectionID, request.slot, request.counter, received, sessionKey: sessionKey))
        }
        return buffer
    }

    /// The acceptor's received count from its answer, or nil when the answer is not
    /// authentic.
    public static func parseAccept(_ payload: ByteBuffer, for request: Request, sessionKey: [UInt8]) -> UInt64? {
        var payload = payload
        guard let received = payload.readInteger(as: UInt64.self), let proof = payload.readBytes(length: 32),
            NativeHandshake.constantTimeEqual(proof, mac("junction-join-ok", request.connectionID, request.slot, request.counter, received, sessionKey: sessionKey))
        else { return nil }
        return received
    }

    /// A request built locally (the dialler keeps it to check the answer).
    public static func makeRequest(connectionID: UInt64, slot: Int, counter: UInt64, received: UInt64, sessionKey: [UInt8]) -> Request {
        Request(connectionID: connectionID, slot: slot, counter: counter, received: received, mac: mac("junction-join", connectionID, slot, counter, received, sessionKey: sessionKey))
    }
}
