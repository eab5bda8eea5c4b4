import JunctionCore
import JunctionTransport
import NIOCore
import Testing

@testable import JunctionNative

/// Drives a dialler and an acceptor against each other in memory, with a manual clock.
struct HandshakeHarness {
    var dialler: NativeHandshake
    var acceptor: NativeHandshake
    var now = NIODeadline.uptimeNanoseconds(1_000_000_000)
    var diallerOutcome: NativeHandshake.Action?
    var acceptorOutcome: NativeHandshake.Action?
    var admission: (NodeName) -> NativeHandshake.Admission

    init(
        dialler: HandshakeIdentity, dialled: NodeName, acceptor: HandshakeIdentity,
        admission: @escaping (NodeName) -> NativeHandshake.Admission = { _ in .accept(cookie: Secret("cookie")) }
    ) {
        self.dialler = NativeHandshake(role: .dialler(dialled: dialled), local: dialler, stepTimeout: .seconds(5))
        self.acceptor = NativeHandshake(role: .acceptor, local: acceptor, stepTimeout: .seconds(5))
        self.admission = admission
    }

    /// Runs the exchange until neither side has anything left to send.
    mutating func run() {
        var toAcceptor: [ByteBuffer] = []
        var toDialler: [ByteBuffer] = []
        _ = acceptor.start(now: now)
        if case .send(let bytes) = dialler.start(now: now) { toAcceptor.append(bytes) }
        var acceptorParser = FrameParser(maxFrameSize: NativeHandshake.maxFrameSize)
        var diallerParser = FrameParser(maxFrameSize: NativeHandshake.maxFrameSize)
        while !toAcceptor.isEmpty || !toDialler.isEmpty {
            for bytes in toAcceptor {
                try! acceptorParser.consume(bytes) { frame in
                    var action = acceptor.receive(frame, now: now)
                    if case .admit(let peer) = action { action = acceptor.admit(admission(peer), now: now) }
                    handle(action, outbox: &toDialler, outcome: &acceptorOutcome)
                }
            }
            toAcceptor = []
            for bytes in toDialler {
                try! diallerParser.consume(bytes) { frame in
                    handle(dialler.receive(frame, now: now), outbox: &toAcceptor, outcome: &diallerOutcome)
                }
            }
            toDialler = []
        }
    }

    func handle(_ action: NativeHandshake.Action?, outbox: inout [ByteBuffer], outcome: inout NativeHandshake.Action?) {
        switch action {
        case .send(let bytes): outbox.append(bytes)
        case .completed(_, let send):
            if let send { outbox.append(send) }
            outcome = action
        case .failed(_, let farewell):
            if let farewell { outbox.append(farewell) }
            outcome = action
        case .admit, nil: break
        }
    }
}

func identity(_ name: NodeName, cookie: String = "cookie", flags: NativeFlags = [], max: Int = 1 << 20, versions: ClosedRange<UInt8> = 1...1) -> HandshakeIdentity {
    HandshakeIdentity(name: name, cookie: Secret(cookie), flags: flags, maxMessageSize: max, versions: versions)
}

extension NativeHandshake.Action {
    var result: HandshakeResult? {
        if case .completed(let result, _) = self { return result }
        return nil
    }
    var error: HandshakeError? {
        if case .failed(let error, _) = self { return error }
        return nil
    }
}

@Suite("Native handshake")
struct NativeHandshakeTests {
    @Test("with the same cookie both sides complete and agree on flags and limits")
    func success() throws {
        var harness = HandshakeHarness(
            dialler: identity("a@localhost", flags: [.compression, .remoteSpawn], max: 4096), dialled: "b@localhost",
            acceptor: identity("b@localhost", flags: [.compression], max: 8192))
        harness.run()
        let diallerResult = try #require(harness.diallerOutcome?.result)
        let acceptorResult = try #require(harness.acceptorOutcome?.result)
        #expect(diallerResult.peer == "b@localhost")
        #expect(acceptorResult.peer == "a@localhost")
        #expect(diallerResult.flags == [.compression] && acceptorResult.flags == [.compression])
        #expect(diallerResult.maxMessageSize == 4096 && acceptorResult.maxMessageSize == 4096)
        #expect(diallerResult.version == 1)
    }

    @Test("a wrong cookie fails on both sides and says so; the cookie is never sent")
    func wrongCookie() throws {
        var harness = HandshakeHarness(
            dialler: identity("a@localhost", cookie: "SECRETCOOKIE-A"), dialled: "b@localhost", acceptor: identity("b@localhost"),
            admission: { _ in .accept(cookie: Secret("SECRETCOOKIE-B")) })
        var sent: [UInt8] = []
        var dialler = harness.dialler
        if case .send(let bytes) = dialler.start(now: harness.now) { sent += bytes.readableBytesView }
        #expect(!sent.containsSubsequence(Array("SECRETCOOKIE-A".utf8)))
        harness.run()
        let acceptorError = try #require(harness.acceptorOutcome?.error)
        let diallerError = try #require(harness.diallerOutcome?.error)
        #expect(acceptorError.reason == .badCookie && !acceptorError.fromPeer)
        #expect(acceptorError.description.contains("wrong cookie"))
        #expect(diallerError.reason == .badCookie && diallerError.fromPeer)
        #expect(diallerError.description.contains("wrong cookie"))
    }

    @Test("over TLS the proofs cover both certificates' fingerprints: the same binding completes, different ones (a proxy ending TLS) fail and say why")
    func channelBinding() throws {
        let seen = [UInt8](repeating: 1, count: 32) + [UInt8](repeating: 2, count: 32)
        var same = HandshakeHarness(dialler: identity("a@localhost"), dialled: "b@localhost", acceptor: identity("b@localhost"))
        same.dialler.channelBinding = seen
        same.acceptor.channelBinding = seen
        same.run()
        let withBinding = try #require(same.diallerOutcome?.result)

        var plain = HandshakeHarness(dialler: identity("a@localhost"), dialled: "b@localhost", acceptor: identity("b@localhost"))
        plain.run()
        #expect(try #require(plain.diallerOutcome?.result).sessionKey != withBinding.sessionKey, "the binding is part of what the keys derive from")

        var proxied = HandshakeHarness(dialler: identity("a@localhost"), dialled: "b@localhost", acceptor: identity("b@localhost"))
        proxied.dialler.channelBinding = seen
        proxied.acceptor.channelBinding = [UInt8](repeating: 9, count: 32) + [UInt8](repeating: 2, count: 32)
        proxied.run()
        let error = try #require(proxied.acceptorOutcome?.error)
        #expect(error.reason == .badCookie)
        #expect(error.description.contains("saw different TLS certificates"))
    }

    @Test("dialling a name the acceptor does not carry is refused")
    func wrongDialledName() throws {
        var harness = HandshakeHarness(dialler: identity("a@localhost"), dialled: "c@localhost", acceptor: identity("b@localhost"))
        harness.run()
        #expect(harness.acceptorOutcome?.error?.reason == .wrongName)
        let error = try #require(harness.diallerOutcome?.error)
        #expect(error.reason == .wrongName && error.description.contains("dialled 'c@localhost'"))
    }

    @Test("versions that do not overlap are refused with both ranges named")
    func versionMismatch() throws {
        var harness = HandshakeHarness(
            dialler: identity("a@localhost", versions: 2...3), dialled: "b@localhost", acceptor: identity("b@localhost", versions: 1...1))
        harness.run()
        let error = try #require(harness.diallerOutcome?.error)
        #expect(error.reason == .versionMismatch && error.description.contains("2...3"))
    }

    @Test("an admission refusal (for example a lost simultaneous-connect tie-break) reaches the dialler")
    func admissionRefused() throws {
        var harness = HandshakeHarness(
            dialler: identity("a@localhost"), dialled: "b@localhost", acceptor: identity("b@localhost"),
            admission: { _ in .reject(.simultaneous, "b@localhost is dialling a@localhost itself and wins the tie-break") })
        harness.run()
        #expect(harness.diallerOutcome?.error?.reason == .simultaneous)
    }

    @Test("a peer that stalls after a truncated hello times out at the step's deadline, not before")
    func stalledPeer() throws {
        var acceptor = NativeHandshake(role: .acceptor, local: identity("b@localhost"), stepTimeout: .seconds(5))
        let start = NIODeadline.uptimeNanoseconds(0)
        #expect(acceptor.start(now: start) == nil)
        var dialler = NativeHandshake(role: .dialler(dialled: "b@localhost"), local: identity("a@localhost"), stepTimeout: .seconds(5))
        guard case .send(var hello) = dialler.start(now: start) else { Issue.record("no hello"); return }
        var parser = FrameParser(maxFrameSize: NativeHandshake.maxFrameSize)
        var frames = 0
        try parser.consume(hello.readSlice(length: 12)!) { _ in frames += 1 }
        #expect(frames == 0)
        #expect(acceptor.deadlineReached(now: start + .milliseconds(4999)) == nil)
        let error = try #require(acceptor.deadlineReached(now: start + .seconds(5))?.error)
        #expect(error.reason == .timeout && error.description.contains("hello within 5000 ms"))
        // The dialler, waiting for a challenge that never comes, times out too.
        #expect(dialler.deadlineReached(now: start + .seconds(5))?.error?.reason == .timeout)
    }

    @Test("garbage instead of a hello is refused as not Junction's protocol", arguments: [
        Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8),
        [0, 0, 0, 20, 1, 0, 0, 0, 0, 0] + Array(repeating: 0x41, count: 14),
        [0, 0, 0, 6, 99, 0, 0, 0, 0, 0],
    ])
    func garbage(bytes: [UInt8]) throws {
        var acceptor = NativeHandshake(role: .acceptor, local: identity("b@localhost"), stepTimeout: .seconds(5))
        _ = acceptor.start(now: .uptimeNanoseconds(0))
        var parser = FrameParser(maxFrameSize: NativeHandshake.maxFrameSize)
        var outcome: NativeHandshake.Action?
        do {
            try parser.consume(ByteBuffer(bytes: bytes)) { frame in outcome = acceptor.receive(frame, now: .uptimeNanoseconds(0)) }
        } catch {
            outcome = acceptor.malformedInput("\(error)")
        }
        let error = try #require(outcome?.error)
        #expect(error.reason == .malformed)
    }
}

extension Array where Element: Equatable {
    func containsSubsequence(_ needle: [Element]) -> Bool {
        guard needle.count <= count else { return false }
        return (0...(count - needle.count)).contains { Array(self[$0..<$0 + needle.count]) == needle }
    }
}
