import Crypto
import JunctionCore
import NIOCore

/// Who this node is in an Erlang handshake.
public struct ErlangIdentity: Sendable {
    public var name: NodeName
    public var cookie: Secret
    /// The creation epmd gave this node.
    public var creation: UInt32
    public var flags: DistributionFlags

    public init(name: NodeName, cookie: Secret, creation: UInt32, flags: DistributionFlags) {
        self.name = name
        self.cookie = cookie
        self.creation = creation
        self.flags = flags
    }
}

/// What a completed handshake agreed.
public struct ErlangHandshakeResult: Sendable, Hashable {
    public var peer: NodeName
    public var peerCreation: UInt32
    /// The intersection of both sides' flags: only these features may be used.
    public var flags: DistributionFlags
    /// The peer's own flags, PUBLISHED included.
    public var peerFlags: DistributionFlags
}

/// Why an Erlang handshake failed.
public struct ErlangHandshakeError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Reason: String, Sendable {
        case malformed, wrongName, badCookie, notAllowed, simultaneous, alreadyConnected, timeout
    }

    public let reason: Reason
    public let detail: String

    public var description: String { "Erlang handshake failed (\(reason.rawValue)): \(detail)" }
}

/// The version-6 Erlang distribution handshake as a state machine without I/O
/// (`spec/erlang-distribution.md` §1.2). Bytes go in, actions come out; deadlines are
/// checked against the `now` the caller passes, so tests drive time by hand. Messages are
/// framed `Len:16 | Tag | ...`.
public struct ErlangHandshake: Sendable {
    public enum Role: Sendable {
        case initiator(dialled: NodeName)
        case acceptor
    }

    public enum Action: Sendable, Equatable {
        /// Write these bytes.
        case send(ByteBuffer)
        /// The acceptor heard from `peer`: call `admit` with the node's decision.
        case admit(peer: NodeName, flags: DistributionFlags)
        /// The connection is up; `send` goes out first when present.
        case completed(ErlangHandshakeResult, send: ByteBuffer?)
        /// Close the connection, after writing `farewell` when present.
        case failed(ErlangHandshakeError, farewell: ByteBuffer?)
    }

    /// What the node decided about an incoming peer.
    public enum Admission: Sendable {
        case accept(cookie: Secret)
        /// Accept, this node dropping its own attempt to the peer (`ok_simultaneous`).
        case acceptSimultaneous(cookie: Secret)
        /// This node's own attempt wins (`nok`).
        case simultaneous
        case notAllowed(String)
    }

    enum State: Sendable {
        case idle
        case awaitingName
        case awaitingAdmission(peer: NodeName, flags: DistributionFlags, peerCreation: UInt32, complement: Bool)
        case awaitingComplement(peer: NodeName, flags: DistributionFlags, challenge: UInt32, cookie: Secret)
        case awaitingStatus
        case awaitingChallenge
        case awaitingReply(peer: NodeName, flags: DistributionFlags, peerCreation: UInt32, challenge: UInt32, cookie: Secret)
        case awaitingAck(peer: NodeName, flags: DistributionFlags, peerCreation: UInt32, challenge: UInt32)
        case done
    }

    public static let maxMessageSize = 4096

    public let role: Role
    let local: ErlangIdentity
    let cookie: Secret
    let stepTimeout: TimeAmount
    var state = State.idle
    var input = ByteBuffer()
    var random: @Sendable () -> UInt32
    public private(set) var deadline: NIODeadline?

    /// Bytes of each handshake message's length: 2 over TCP, 4 inside OTP's TLS
    /// distribution (`inet_tls_dist`).
    let lengthSize: Int

    /// `cookie` is the initiator's cookie for this peer (the route's, or the node's); the
    /// acceptor learns its cookie from the admission. `random` draws challenges. `tls`
    /// selects the framing of OTP's TLS distribution.
    public init(
        role: Role, local: ErlangIdentity, cookie: Secret? = nil, stepTimeout: TimeAmount, tls: Bool = false,
        random: @escaping @Sendable () -> UInt32 = { UInt32.random(in: 0...UInt32.max) }
    ) {
        self.lengthSize = tls ? 4 : 2
        self.role = role
        self.local = local
        self.cookie = cookie ?? local.cookie
        self.stepTimeout = stepTimeout
        self.random = random
    }

    /// Starts the handshake: the initiator sends its name.
    public mutating func start(now: NIODeadline) -> Action? {
        deadline = now + stepTimeout
        switch role {
        case .acceptor:
            state = .awaitingName
            return nil
        case .initiator:
            state = .awaitingStatus
            var message = ByteBuffer()
            message.writeInteger(UInt8(ascii: "N"))
            message.writeMultipleIntegers(local.flags.rawValue, local.creation, UInt16(local.name.description.utf8.count))
            message.writeString(local.name.description)
            return .send(framed(message))
        }
    }

    /// The deadline of the current step passed.
    public mutating func timedOut(now: NIODeadline) -> Action? {
        guard let deadline, now >= deadline, !isDone else { return nil }
        state = .done
        return .failed(ErlangHandshakeError(reason: .timeout, detail: "the peer did not answer within \(stepTimeout.nanoseconds / 1_000_000) ms"), farewell: nil)
    }

    var isDone: Bool { if case .done = state { return true } else { return false } }

    /// Feeds received bytes; returns the actions they cause, in order. Bytes after the
    /// handshake's last message stay in `leftover`.
    public mutating func receive(_ bytes: inout ByteBuffer, now: NIODeadline) -> [Action] {
        input.writeBuffer(&bytes)
        var actions: [Action] = []
        while !isDone, let length = messageLength() {
            if case .awaitingAdmission = state { break }
            guard input.readableBytes >= lengthSize + length else { break }
            input.moveReaderIndex(forwardBy: lengthSize)
            var message = input.readSlice(length: length)!
            deadline = now + stepTimeout
            if let action = handle(&message) { actions.append(action) }
        }
        return actions
    }

    /// The length of the next message, once its length field is in.
    func messageLength() -> Int? {
        lengthSize == 4 ? input.getInteger(at: input.readerIndex, as: UInt32.self).map(Int.init) : input.getInteger(at: input.readerIndex, as: UInt16.self).map(Int.init)
    }

    /// A handshake message with its length in front.
    func framed(_ body: ByteBuffer) -> ByteBuffer {
        var buffer = ByteBuffer()
        if lengthSize == 4 { buffer.writeInteger(UInt32(body.readableBytes)) } else { buffer.writeInteger(UInt16(body.readableBytes)) }
        buffer.writeImmutableBuffer(body)
        return buffer
    }

    /// Bytes received after the handshake completed (the first distribution packets).
    public var leftover: ByteBuffer { input }

    /// The node's decision about the peer named in `.admit`.
    public mutating func admit(_ admission: Admission, now: NIODeadline) -> [Action] {
        guard case .awaitingAdmission(let peer, let flags, let peerCreation, let complement) = state else { return [] }
        deadline = now + stepTimeout
        let status: String
        let cookie: Secret
        switch admission {
        case .accept(let accepted):
            (status, cookie) = ("ok", accepted)
        case .acceptSimultaneous(let accepted):
            (status, cookie) = ("ok_simultaneous", accepted)
        case .simultaneous:
            state = .done
            return [.failed(ErlangHandshakeError(reason: .simultaneous, detail: "\(local.name) is connecting to \(peer) too and wins (greater name)"), farewell: statusMessage("nok"))]
        case .notAllowed(let why):
            state = .done
            return [.failed(ErlangHandshakeError(reason: .notAllowed, detail: why), farewell: statusMessage("not_allowed"))]
        }
        let challenge = random()
        var message = ByteBuffer()
        message.writeInteger(UInt8(ascii: "N"))
        message.writeMultipleIntegers(local.flags.rawValue, challenge, local.creation, UInt16(local.name.description.utf8.count))
        message.writeString(local.name.description)
        if complement {
            state = .awaitingComplement(peer: peer, flags: flags, challenge: challenge, cookie: cookie)
        } else {
            state = .awaitingReply(peer: peer, flags: flags, peerCreation: peerCreation, challenge: challenge, cookie: cookie)
        }
        var out = statusMessage(status)
        out.writeImmutableBuffer(framed(message))
        var actions: [Action] = [.send(out)]
        var pending = ByteBuffer()
        actions += receive(&pending, now: now)
        return actions
    }

    mutating func handle(_ message: inout ByteBuffer) -> Action? {
        guard let tag = message.readInteger(as: UInt8.self) else { return fail(.malformed, "an empty handshake message") }
        switch (state, tag) {
        case (.awaitingName, UInt8(ascii: "N")):
            guard let (flags, creation, length) = message.readMultipleIntegers(as: (UInt64, UInt32, UInt16).self),
                let text = message.readString(length: Int(length))
            else { return fail(.malformed, "a truncated send_name") }
            return named(text, flags: DistributionFlags(rawValue: flags), creation: creation, complement: false)
        case (.awaitingName, UInt8(ascii: "n")):
            // Version 5 from an OTP 23/24 node that did not know our version.
            guard let (_, flags) = message.readMultipleIntegers(as: (UInt16, UInt32).self), let text = message.readString(length: message.readableBytes) else {
                return fail(.malformed, "a truncated version-5 send_name")
            }
            return named(text, flags: DistributionFlags(rawValue: UInt64(flags)), creation: 0, complement: true)
        case (.awaitingComplement(let peer, let flags, let challenge, let cookie), UInt8(ascii: "c")):
            guard let (high, creation) = message.readMultipleIntegers(as: (UInt32, UInt32).self) else { return fail(.malformed, "a truncated complement") }
            let all = flags.union(DistributionFlags(rawValue: UInt64(high) << 32))
            state = .awaitingReply(peer: peer, flags: all, peerCreation: creation, challenge: challenge, cookie: cookie)
            return nil
        case (.awaitingStatus, UInt8(ascii: "s")):
            let status = message.readString(length: message.readableBytes) ?? ""
            switch status {
            case "ok", "ok_simultaneous":
                state = .awaitingChallenge
                return nil
            case "alive":
                // This node has no live connection to the peer, or it would not dial.
                state = .awaitingChallenge
                return .send(statusMessage("true"))
            case "nok":
                return fail(.simultaneous, "the peer is connecting to this node too and wins (greater name)")
            case "not_allowed":
                return fail(.notAllowed, "the peer refused this node (missing mandatory flags, or not allowed to connect)")
            default:
                return fail(.malformed, "an unknown handshake status '\(status)'")
            }
        case (.awaitingChallenge, UInt8(ascii: "N")):
            guard case .initiator(let dialled) = role,
                let (flags, challenge, creation, length) = message.readMultipleIntegers(as: (UInt64, UInt32, UInt32, UInt16).self),
                let text = message.readString(length: Int(length))
            else { return fail(.malformed, "a truncated challenge") }
            guard text == dialled.description else {
                return fail(.wrongName, "dialled \(dialled) but the peer calls itself \(text)")
            }
            let peerFlags = DistributionFlags(rawValue: flags)
            let missing = peerFlags.missingMandatory()
            guard missing.isEmpty else { return fail(.notAllowed, "\(dialled) lacks mandatory distribution flags: \(missing)") }
            let ours = random()
            state = .awaitingAck(peer: dialled, flags: peerFlags, peerCreation: creation, challenge: ours)
            var reply = ByteBuffer()
            reply.writeInteger(UInt8(ascii: "r"))
            reply.writeInteger(ours)
            reply.writeBytes(Self.digest(cookie: cookie, challenge: challenge))
            return .send(framed(reply))
        case (.awaitingReply(let peer, let flags, let peerCreation, let challenge, let cookie), UInt8(ascii: "r")):
            guard let theirs = message.readInteger(as: UInt32.self), let digest = message.readBytes(length: 16) else {
                return fail(.malformed, "a truncated challenge reply")
            }
            guard Self.constantTimeEqual(digest, Self.digest(cookie: cookie, challenge: challenge)) else {
                // As OTP does: no answer, just close.
                return fail(.badCookie, "\(peer) proved a different cookie; check the cookie both sides use for this connection")
            }
            state = .done
            var ack = ByteBuffer()
            ack.writeInteger(UInt8(ascii: "a"))
            ack.writeBytes(Self.digest(cookie: cookie, challenge: theirs))
            return .completed(result(peer: peer, flags: flags, creation: peerCreation), send: framed(ack))
        case (.awaitingAck(let peer, let flags, let peerCreation, let challenge), UInt8(ascii: "a")):
            guard let digest = message.readBytes(length: 16) else { return fail(.malformed, "a truncated challenge ack") }
            guard Self.constantTimeEqual(digest, Self.digest(cookie: cookie, challenge: challenge)) else {
                return fail(.badCookie, "\(peer) answered the challenge with a different cookie; check the cookie both sides use")
            }
            state = .done
            return .completed(result(peer: peer, flags: flags, creation: peerCreation), send: nil)
        default:
            return fail(.malformed, "an unexpected handshake message '\(Character(Unicode.Scalar(tag)))' (\(tag)) at this step")
        }
    }

    mutating func named(_ text: String, flags: DistributionFlags, creation: UInt32, complement: Bool) -> Action? {
        guard let peer = try? NodeName(text) else {
            state = .done
            return .failed(ErlangHandshakeError(reason: .malformed, detail: "'\(text)' is not a node name"), farewell: statusMessage("not_allowed"))
        }
        let missing = flags.missingMandatory()
        guard missing.isEmpty else {
            state = .done
            return .failed(
                ErlangHandshakeError(reason: .notAllowed, detail: "\(peer) lacks mandatory distribution flags: \(missing)"), farewell: statusMessage("not_allowed"))
        }
        state = .awaitingAdmission(peer: peer, flags: flags, peerCreation: creation, complement: complement)
        return .admit(peer: peer, flags: flags)
    }

    func result(peer: NodeName, flags: DistributionFlags, creation: UInt32) -> ErlangHandshakeResult {
        ErlangHandshakeResult(peer: peer, peerCreation: creation, flags: flags.intersection(local.flags), peerFlags: flags)
    }

    mutating func fail(_ reason: ErlangHandshakeError.Reason, _ detail: String) -> Action {
        state = .done
        return .failed(ErlangHandshakeError(reason: reason, detail: detail), farewell: nil)
    }

    /// `MD5(cookie ‖ decimal(challenge))`, as OTP's `dist_util:gen_digest/2`.
    public static func digest(cookie: Secret, challenge: UInt32) -> [UInt8] {
        Array(Insecure.MD5.hash(data: Array((cookie.value + String(challenge)).utf8)))
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }

    func statusMessage(_ text: String) -> ByteBuffer {
        var message = ByteBuffer()
        message.writeInteger(UInt8(ascii: "s"))
        message.writeString(text)
        return framed(message)
    }
}
