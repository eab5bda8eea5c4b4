import Crypto
import JunctionCore
import JunctionTransport
import NIOCore

/// Frame kinds of the native protocol.
public enum NativeFrameKind {
    public static let hello: UInt8 = 1
    public static let challenge: UInt8 = 2
    public static let reply: UInt8 = 3
    public static let accept: UInt8 = 4
    public static let reject: UInt8 = 5
    /// First frame of an extra link: joins an established connection's slot.
    public static let join: UInt8 = 6
    /// The acceptor's answer to a join.
    public static let joinAccept: UInt8 = 7
    /// `u64 frames received` on the link's slot, so the peer can drop what it kept.
    public static let ack: UInt8 = 8
    /// An idle link's sign of life (no payload, not counted as a received frame).
    public static let heartbeat: UInt8 = 9
    /// A message to a registered name: `u8 name length | name | ETF message`.
    public static let sendName: UInt8 = 16
    /// A message to a pid of the receiving node: `u32 id | u32 serial | ETF message`.
    public static let sendPid: UInt8 = 17
    /// Monitor a process of the receiving node: ETF `{Ref, WatcherPid, Target}`, Target a
    /// registered name (atom) or a pid.
    public static let monitor: UInt8 = 18
    /// Cancel a monitor: ETF `{Ref}`.
    public static let demonitor: UInt8 = 19
    /// A monitored process exited: ETF `{Ref, WatcherPid, Target, Reason}`.
    public static let down: UInt8 = 20
    /// The sender closes the connection gracefully.
    public static let close: UInt8 = 32
}

/// Feature flags a native node offers; the connection uses the intersection.
public struct NativeFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let remoteSpawn = NativeFlags(rawValue: 1 << 0)
    public static let compression = NativeFlags(rawValue: 1 << 1)
}

/// What one side brings to a handshake.
public struct HandshakeIdentity: Sendable {
    public var name: NodeName
    public var cookie: Secret
    public var flags: NativeFlags
    public var maxMessageSize: Int
    public var versions: ClosedRange<UInt8>
    /// Links per connection this side announces when it accepts (1...16).
    public var poolSize: Int

    public init(
        name: NodeName, cookie: Secret, flags: NativeFlags = [], maxMessageSize: Int, versions: ClosedRange<UInt8> = NativeHandshake.supportedVersions,
        poolSize: Int = 3
    ) {
        self.name = name
        self.cookie = cookie
        self.flags = flags
        self.maxMessageSize = maxMessageSize
        self.versions = versions
        self.poolSize = poolSize
    }
}

/// What both sides agreed on.
public struct HandshakeResult: Sendable, Hashable {
    public var peer: NodeName
    public var version: UInt8
    /// Intersection of both sides' flags.
    public var flags: NativeFlags
    /// The smaller of both sides' limits.
    public var maxMessageSize: Int
    /// Identifies the connection when extra links join it.
    public var connectionID: UInt64
    /// Links in the connection's pool, as the acceptor announced.
    public var poolSize: Int
    /// Key for the join proofs of extra links, derived from the cookie and the whole
    /// handshake; never sent.
    public var sessionKey: [UInt8]
}

/// Why a handshake failed; `description` says what to do about it.
public struct HandshakeError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Reason: UInt8, Sendable {
        case malformed = 1
        case versionMismatch = 2
        case wrongName = 3
        case badCookie = 4
        case notAllowed = 5
        case simultaneous = 6
        case timeout = 7
        case alreadyConnected = 8
        /// (join) The acceptor does not know the connection: it restarted, or ended it.
        case unknownConnection = 9
    }

    public let reason: Reason
    public let detail: String
    /// True when the peer told us (a reject frame), false when we found it ourselves.
    public let fromPeer: Bool

    public var description: String {
        let source = fromPeer ? "the peer refused the handshake: " : ""
        return source + detail
    }
}

/// The native handshake as a sans-IO state machine (DESIGN.md "Native stack"): the
/// dialler introduces itself and the name it dialled, the acceptor answers with its
/// nonce, the dialler proves it knows the cookie first, then the acceptor proves it.
/// Proofs are HMAC-SHA256 keyed by the cookie over the whole transcript, compared in
/// constant time; the cookie never crosses the wire. Each step has a deadline.
public struct NativeHandshake: Sendable {
    public static let supportedVersions: ClosedRange<UInt8> = 1...1
    public static let magic: [UInt8] = Array("JNCT".utf8)
    /// Largest handshake frame accepted: garbage with a huge length is refused early.
    public static let maxFrameSize = 4096
    public static let nonceSize = 32

    public enum Role: Sendable {
        case dialler(dialled: NodeName)
        case acceptor
    }

    /// What the shell must do.
    public enum Action: Sendable {
        /// Write these bytes to the peer.
        case send(ByteBuffer)
        /// (Acceptor) Decide whether `peer` may connect; answer with `admit(_:now:)`.
        case admit(peer: NodeName)
        /// Done: the connection is up once `send` (if any) is written.
        case completed(HandshakeResult, send: ByteBuffer?)
        /// Done: write `farewell` if present, then close.
        case failed(HandshakeError, farewell: ByteBuffer?)
    }

    /// The shell's answer to `.admit`.
    public enum Admission: Sendable {
        /// Go on, proving with this cookie (the node's, or a matching route's).
        case accept(cookie: Secret)
        case reject(HandshakeError.Reason, String)
    }

    enum State: Sendable {
        case idle
        case awaitingHello
        case awaitingAdmission(Hello)
        case awaitingChallenge(nonce: [UInt8])
        case awaitingReply(Transcript)
        case awaitingAccept(Transcript)
        case done
    }

    struct Hello: Sendable {
        var versions: ClosedRange<UInt8>
        var flags: UInt64
        var maxMessageSize: Int
        var nonce: [UInt8]
        var name: NodeName
        var dialled: String
    }

    /// Everything both proofs cover.
    struct Transcript: Sendable {
        var version: UInt8
        var diallerFlags: UInt64
        var acceptorFlags: UInt64
        var diallerNonce: [UInt8]
        var acceptorNonce: [UInt8]
        var diallerName: NodeName
        var acceptorName: NodeName
        var diallerMax: Int
        var acceptorMax: Int
        var cookie: Secret
        /// The TLS channel binding (see `channelBinding`); empty without TLS.
        var binding: [UInt8]

        func proof(_ label: String) -> [UInt8] {
            var message: [UInt8] = Array(label.utf8)
            message.append(version)
            withUnsafeBytes(of: diallerFlags.bigEndian) { message += $0 }
            withUnsafeBytes(of: acceptorFlags.bigEndian) { message += $0 }
            withUnsafeBytes(of: UInt32(diallerMax).bigEndian) { message += $0 }
            withUnsafeBytes(of: UInt32(acceptorMax).bigEndian) { message += $0 }
            message += diallerNonce + acceptorNonce
            for name in [diallerName.description, acceptorName.description] {
                withUnsafeBytes(of: UInt16(name.utf8.count).bigEndian) { message += $0 }
                message += name.utf8
            }
            message += binding
            let key = SymmetricKey(data: Array(cookie.value.utf8))
            return Array(HMAC<SHA256>.authenticationCode(for: message, using: key))
        }

        func result(for role: Role, connectionID: UInt64, poolSize: Int) -> HandshakeResult {
            let peer: NodeName
            if case .acceptor = role { peer = diallerName } else { peer = acceptorName }
            return HandshakeResult(
                peer: peer, version: version, flags: NativeFlags(rawValue: diallerFlags & acceptorFlags),
                maxMessageSize: min(diallerMax, acceptorMax), connectionID: connectionID, poolSize: poolSize,
                sessionKey: proof("junction-session"))
        }
    }

    public let role: Role
    /// Over TLS: the SHA-256 fingerprints of the dialler's and then the acceptor's
    /// certificate, as this side saw them. Both proofs cover it, so a proxy that ends TLS
    /// in between (each side then sees another certificate) fails the handshake. Set it
    /// before the peer's first frame is handed in.
    public var channelBinding: [UInt8] = []
    let local: HandshakeIdentity
    let stepTimeout: TimeAmount
    let makeNonce: @Sendable () -> [UInt8]
    var state: State = .idle
    /// When the current step times out; nil when nothing is awaited.
    public private(set) var deadline: NIODeadline?

    public init(
        role: Role, local: HandshakeIdentity, stepTimeout: TimeAmount,
        makeNonce: @escaping @Sendable () -> [UInt8] = { (0..<NativeHandshake.nonceSize).map { _ in UInt8.random(in: 0...255) } }
    ) {
        self.role = role
        self.local = local
        self.stepTimeout = stepTimeout
        self.makeNonce = makeNonce
    }

    /// Starts: the dialler sends its hello; the acceptor starts waiting for one.
    public mutating func start(now: NIODeadline) -> Action? {
        deadline = now + stepTimeout
        switch role {
        case .acceptor:
            state = .awaitingHello
            return nil
        case .dialler(let dialled):
            let nonce = makeNonce()
            state = .awaitingChallenge(nonce: nonce)
            return .send(frame(NativeFrameKind.hello) { buffer in
                buffer.writeBytes(Self.magic)
                buffer.writeMultipleIntegers(local.versions.lowerBound, local.versions.upperBound, local.flags.rawValue, UInt32(local.maxMessageSize))
                buffer.writeBytes(nonce)
                Self.writeName(local.name.description, into: &buffer)
                Self.writeName(dialled.description, into: &buffer)
            })
        }
    }

    /// Feeds one handshake frame from the peer.
    public mutating func receive(_ frame: Frame, now: NIODeadline) -> Action? {
        var payload = frame.payload
        if frame.kind == NativeFrameKind.reject {
            let code = payload.readInteger(as: UInt8.self).flatMap(HandshakeError.Reason.init(rawValue:)) ?? .malformed
            let text = Self.readName(&payload) ?? "no reason given"
            return fail(HandshakeError(reason: code, detail: text, fromPeer: true), notify: false)
        }
        switch (state, frame.kind) {
        case (.awaitingHello, NativeFrameKind.hello):
            return onHello(&payload)
        case (.awaitingChallenge(let nonce), NativeFrameKind.challenge):
            return onChallenge(&payload, nonce: nonce, now: now)
        case (.awaitingReply(let transcript), NativeFrameKind.reply):
            return onReply(&payload, transcript)
        case (.awaitingAccept(let transcript), NativeFrameKind.accept):
            return onAccept(&payload, transcript)
        case (.done, _):
            return nil
        default:
            return fail(.malformed, "unexpected frame kind \(frame.kind) during the handshake: the peer does not speak Junction's protocol")
        }
    }

    /// The shell's decision on an `.admit` action.
    public mutating func admit(_ admission: Admission, now: NIODeadline) -> Action? {
        guard case .awaitingAdmission(let hello) = state else { return nil }
        switch admission {
        case .reject(let reason, let text):
            return fail(reason, text)
        case .accept(let cookie):
            let version = min(hello.versions.upperBound, local.versions.upperBound)
            let nonce = makeNonce()
            let transcript = Transcript(
                version: version, diallerFlags: hello.flags, acceptorFlags: local.flags.rawValue, diallerNonce: hello.nonce,
                acceptorNonce: nonce, diallerName: hello.name, acceptorName: local.name, diallerMax: hello.maxMessageSize,
                acceptorMax: local.maxMessageSize, cookie: cookie, binding: channelBinding)
            state = .awaitingReply(transcript)
            deadline = now + stepTimeout
            return .send(frame(NativeFrameKind.challenge) { buffer in
                buffer.writeMultipleIntegers(version, local.flags.rawValue, UInt32(local.maxMessageSize))
                buffer.writeBytes(nonce)
                Self.writeName(local.name.description, into: &buffer)
            })
        }
    }

    /// Called when `deadline` passes: fails the handshake if still waiting.
    public mutating func deadlineReached(now: NIODeadline) -> Action? {
        guard let deadline, now >= deadline else { return nil }
        let step: String
        switch state {
        case .awaitingHello: step = "the peer's hello"
        case .awaitingAdmission: return nil
        case .awaitingChallenge: step = "the acceptor's challenge"
        case .awaitingReply: step = "the dialler's proof"
        case .awaitingAccept: step = "the acceptor's answer"
        case .idle, .done: return nil
        }
        return fail(.timeout, "no \(step) within \(stepTimeout.nanoseconds / 1_000_000) ms: the peer stalled or is not a Junction node")
    }

    /// Tells the state machine the bytes could not be framed at all.
    public mutating func malformedInput(_ description: String) -> Action? {
        fail(.malformed, description)
    }

    /// Over TLS a failed proof may also mean the two sides saw different certificates.
    static func bindingHint(_ transcript: Transcript) -> String {
        transcript.binding.isEmpty ? "" : "; or the two sides saw different TLS certificates (a proxy that ends TLS in between)"
    }

    // MARK: - steps

    mutating func onHello(_ payload: inout ByteBuffer) -> Action? {
        guard payload.readBytes(length: 4) == Self.magic,
            let (low, high, flags, max) = payload.readMultipleIntegers(as: (UInt8, UInt8, UInt64, UInt32).self),
            let nonce = payload.readBytes(length: Self.nonceSize), low <= high,
            let nameText = Self.readName(&payload), let dialled = Self.readName(&payload)
        else {
            return fail(.malformed, "the first frame is not a Junction hello: the peer does not speak Junction's protocol")
        }
        let name: NodeName
        do { name = try NodeName(nameText) } catch { return fail(.malformed, "the peer introduced itself with \(error)") }
        guard dialled == local.name.description else {
            return fail(.wrongName, "the peer dialled '\(dialled)' but this node is '\(local.name)': check the peer's route for that name")
        }
        guard (low...high).overlaps(local.versions) else {
            return fail(.versionMismatch, "version mismatch: \(name) speaks versions \(low)...\(high), this node \(local.versions.lowerBound)...\(local.versions.upperBound); upgrade the older node")
        }
        state = .awaitingAdmission(Hello(versions: low...high, flags: flags, maxMessageSize: Int(max), nonce: nonce, name: name, dialled: dialled))
        deadline = nil
        return .admit(peer: name)
    }

    mutating func onChallenge(_ payload: inout ByteBuffer, nonce: [UInt8], now: NIODeadline) -> Action? {
        guard case .dialler(let dialled) = role,
            let (version, flags, max) = payload.readMultipleIntegers(as: (UInt8, UInt64, UInt32).self),
            let acceptorNonce = payload.readBytes(length: Self.nonceSize), let nameText = Self.readName(&payload)
        else {
            return fail(.malformed, "the acceptor's challenge is malformed: the peer does not speak Junction's protocol")
        }
        guard nameText == dialled.description else {
            return fail(.wrongName, "dialled '\(dialled)' but the node there is '\(nameText)': the resolver or the route points at the wrong node")
        }
        guard local.versions.contains(version) else {
            return fail(.versionMismatch, "version mismatch: the acceptor chose version \(version), this node speaks \(local.versions.lowerBound)...\(local.versions.upperBound)")
        }
        let transcript = Transcript(
            version: version, diallerFlags: local.flags.rawValue, acceptorFlags: flags, diallerNonce: nonce, acceptorNonce: acceptorNonce,
            diallerName: local.name, acceptorName: dialled, diallerMax: local.maxMessageSize, acceptorMax: Int(max), cookie: local.cookie,
            binding: channelBinding)
        state = .awaitingAccept(transcript)
        deadline = now + stepTimeout
        return .send(frame(NativeFrameKind.reply) { $0.writeBytes(transcript.proof("junction-dialler")) })
    }

    mutating func onReply(_ payload: inout ByteBuffer, _ transcript: Transcript) -> Action? {
        guard let proof = payload.readBytes(length: 32) else { return fail(.malformed, "the dialler's proof is malformed") }
        guard Self.constantTimeEqual(proof, transcript.proof("junction-dialler")) else {
            return fail(.badCookie, "\(transcript.diallerName) does not know this node's cookie (wrong cookie): set the same cookie on both nodes or a route cookie for \(transcript.diallerName)\(Self.bindingHint(transcript))")
        }
        state = .done
        deadline = nil
        let connectionID = UInt64.random(in: 1...UInt64.max)
        let poolSize = max(1, min(16, local.poolSize))
        let accept = frame(NativeFrameKind.accept) { buffer in
            buffer.writeBytes(transcript.proof("junction-acceptor"))
            buffer.writeMultipleIntegers(connectionID, UInt8(poolSize))
        }
        return .completed(transcript.result(for: role, connectionID: connectionID, poolSize: poolSize), send: accept)
    }

    mutating func onAccept(_ payload: inout ByteBuffer, _ transcript: Transcript) -> Action? {
        guard let proof = payload.readBytes(length: 32), let (connectionID, poolSize) = payload.readMultipleIntegers(as: (UInt64, UInt8).self),
            (1...16).contains(poolSize)
        else { return fail(.malformed, "the acceptor's answer is malformed") }
        guard Self.constantTimeEqual(proof, transcript.proof("junction-acceptor")) else {
            return fail(.badCookie, "\(transcript.acceptorName) could not prove it knows the cookie (wrong cookie): set the same cookie on both nodes or a route cookie\(Self.bindingHint(transcript))")
        }
        state = .done
        deadline = nil
        return .completed(transcript.result(for: role, connectionID: connectionID, poolSize: Int(poolSize)), send: nil)
    }

    // MARK: - helpers

    mutating func fail(_ reason: HandshakeError.Reason, _ detail: String) -> Action {
        fail(HandshakeError(reason: reason, detail: detail, fromPeer: false), notify: true)
    }

    mutating func fail(_ error: HandshakeError, notify: Bool) -> Action {
        state = .done
        deadline = nil
        let farewell = notify ? frame(NativeFrameKind.reject) { buffer in
            buffer.writeInteger(error.reason.rawValue)
            Self.writeName(error.detail, into: &buffer)
        } : nil
        return .failed(error, farewell: farewell)
    }

    func frame(_ kind: UInt8, _ body: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var buffer = ByteBuffer()
        Frame.write(kind: kind, streamKey: 0, into: &buffer, body: body)
        return buffer
    }

    public static func writeName(_ text: String, into buffer: inout ByteBuffer) {
        let bytes = Array(text.utf8.prefix(1024))
        buffer.writeInteger(UInt16(bytes.count))
        buffer.writeBytes(bytes)
    }

    public static func readName(_ buffer: inout ByteBuffer) -> String? {
        guard let count = buffer.readInteger(as: UInt16.self), let bytes = buffer.readBytes(length: Int(count)) else { return nil }
        return String(validating: bytes, as: UTF8.self)
    }

    public static func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        var difference: UInt8 = 0
        for index in lhs.indices { difference |= lhs[index] ^ rhs[index] }
        return difference == 0
    }
}
