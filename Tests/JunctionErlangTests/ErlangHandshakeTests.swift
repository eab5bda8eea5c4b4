import JunctionCore
import NIOCore
import Testing

@testable import JunctionErlang

/// Bytes from `spec/erlang-dist-vectors.txt` (a real exchange with OTP 25.2.3, cookie X).
func hex(_ text: String) -> ByteBuffer {
    let digits = text.split(separator: " ").map { UInt8($0, radix: 16)! }
    return ByteBuffer(bytes: digits)
}

@Suite("Erlang handshake")
struct ErlangHandshakeTests {
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
    let minimal = DistributionFlags(rawValue: 0x403070f94)

    func sent(_ action: ErlangHandshake.Action?) -> ByteBuffer? {
        if case .send(let bytes) = action { return bytes }
        return nil
    }

    @Test("the digest is MD5 of the cookie text then the decimal challenge, as in the live exchange")
    func digest() {
        #expect(ErlangHandshake.digest(cookie: Secret("X"), challenge: 2_176_485_163) == hex("02 e4 ad dc 9d 9a 09 20 6d f3 1e 67 c2 85 b9 40").readableBytesView.map { $0 })
        #expect(ErlangHandshake.digest(cookie: Secret("X"), challenge: 0x2ea7_21d7) == hex("4b 75 d3 cc 08 a1 07 67 83 07 18 7c 6f 60 dd bf").readableBytesView.map { $0 })
    }

    @Test("as initiator: the bytes of the live exchange with OTP 25, byte for byte")
    func initiatorVector() {
        let local = ErlangIdentity(name: "py@vm", cookie: Secret("X"), creation: 0x6b04_240f, flags: minimal)
        var handshake = ErlangHandshake(role: .initiator(dialled: "b@vm"), local: local, stepTimeout: .seconds(7), random: { 0x2ea7_21d7 })
        #expect(sent(handshake.start(now: t0)) == hex("00 14 4e 00 00 00 04 03 07 0f 94 6b 04 24 0f 00 05 70 79 40 76 6d"))
        var status = hex("00 03 73 6f 6b")
        #expect(handshake.receive(&status, now: t0).isEmpty)
        var challenge = hex("00 17 4e 00 00 00 0d 07 df 7f bd 81 ba 87 2b 6b 04 22 b2 00 04 62 40 76 6d")
        let reply = handshake.receive(&challenge, now: t0)
        #expect(reply.map(sent) == [hex("00 15 72 2e a7 21 d7 02 e4 ad dc 9d 9a 09 20 6d f3 1e 67 c2 85 b9 40")])
        var ack = hex("00 11 61 4b 75 d3 cc 08 a1 07 67 83 07 18 7c 6f 60 dd bf")
        guard case .completed(let result, nil) = handshake.receive(&ack, now: t0).first else {
            Issue.record("the ack did not complete the handshake")
            return
        }
        #expect(result.peer.description == "b@vm" && result.peerCreation == 1_795_433_138)
        #expect(result.flags.description == "EXTENDED_REFERENCES FUN_TAGS NEW_FUN_TAGS EXTENDED_PIDS_PORTS EXPORT_PTR_TAG BIT_BINARIES NEW_FLOATS UTF8_ATOMS MAP_TAG BIG_CREATION HANDSHAKE_23 UNLINK_ID V4_NC")
    }

    @Test("as acceptor: a real OTP 25 node's send_name and reply, byte for byte")
    func acceptorVector() {
        let local = ErlangIdentity(name: "py@vm", cookie: Secret("X"), creation: 0x6b04_240e, flags: minimal)
        var handshake = ErlangHandshake(role: .acceptor, local: local, stepTimeout: .seconds(7), random: { 0x5468_ba14 })
        #expect(handshake.start(now: t0) == nil)
        var name = hex("00 13 4e 00 00 00 0d 07 df 7f bd 6b 04 22 b4 00 04 63 40 76 6d")
        guard case .admit(let peer, let flags) = handshake.receive(&name, now: t0).first else {
            Issue.record("send_name did not ask for admission")
            return
        }
        #expect(peer.description == "c@vm" && flags.contains(.published))
        let answer = handshake.admit(.accept(cookie: Secret("X")), now: t0)
        #expect(answer.map(sent) == [hex("00 03 73 6f 6b 00 18 4e 00 00 00 04 03 07 0f 94 54 68 ba 14 6b 04 24 0e 00 05 70 79 40 76 6d")])
        var reply = hex("00 15 72 f0 25 d3 6a ee a5 9c 4e 31 84 b1 43 d3 e5 e7 13 80 3a c0 73")
        guard case .completed(let result, let ack) = handshake.receive(&reply, now: t0).first else {
            Issue.record("the reply did not complete the handshake")
            return
        }
        #expect(ack == hex("00 11 61 82 5f a5 88 19 28 e8 75 fa 94 75 5c af 2c 6f 0c"))
        #expect(result.peerCreation == 1_795_433_140)
    }

    @Test("a peer lacking a mandatory flag is refused with not_allowed, naming the flags")
    func missingFlags() {
        let local = ErlangIdentity(name: "py@vm", cookie: Secret("X"), creation: 1, flags: minimal)
        var handshake = ErlangHandshake(role: .acceptor, local: local, stepTimeout: .seconds(7))
        _ = handshake.start(now: t0)
        // The live negative case: flags 0x403050f94, MAP_TAG missing.
        var name = hex("00 14 4e 00 00 00 04 03 05 0f 94 00 00 04 d2 00 05 70 79 40 76 6d")
        guard case .failed(let error, let farewell) = handshake.receive(&name, now: t0).first else {
            Issue.record("expected a refusal")
            return
        }
        #expect(error.reason == .notAllowed && error.detail.contains("MAP_TAG"))
        #expect(farewell == hex("00 0c 73 6e 6f 74 5f 61 6c 6c 6f 77 65 64"))
    }

    @Test("a wrong cookie closes without an answer; a silent peer times out on the manual clock")
    func wrongCookieAndTimeout() {
        let local = ErlangIdentity(name: "py@vm", cookie: Secret("Y"), creation: 0x6b04_240e, flags: minimal)
        var handshake = ErlangHandshake(role: .acceptor, local: local, stepTimeout: .seconds(7), random: { 0x5468_ba14 })
        _ = handshake.start(now: t0)
        var name = hex("00 13 4e 00 00 00 0d 07 df 7f bd 6b 04 22 b4 00 04 63 40 76 6d")
        _ = handshake.receive(&name, now: t0)
        _ = handshake.admit(.accept(cookie: Secret("Y")), now: t0)
        var reply = hex("00 15 72 f0 25 d3 6a ee a5 9c 4e 31 84 b1 43 d3 e5 e7 13 80 3a c0 73")
        guard case .failed(let error, nil) = handshake.receive(&reply, now: t0).first else {
            Issue.record("expected a cookie failure")
            return
        }
        #expect(error.reason == .badCookie)

        var silent = ErlangHandshake(role: .initiator(dialled: "b@vm"), local: local, stepTimeout: .seconds(7))
        _ = silent.start(now: t0)
        #expect(silent.timedOut(now: t0 + .seconds(6)) == nil)
        guard case .failed(let timeout, _) = silent.timedOut(now: t0 + .seconds(7)) else {
            Issue.record("expected a timeout")
            return
        }
        #expect(timeout.reason == .timeout)
    }

    @Test("a version-5 'n' from an OTP 23/24 node is answered with the 'N' challenge, then its complement 'c' is read")
    func versionFive() {
        let local = ErlangIdentity(name: "py@vm", cookie: Secret("X"), creation: 7, flags: minimal)
        var handshake = ErlangHandshake(role: .acceptor, local: local, stepTimeout: .seconds(7), random: { 42 })
        _ = handshake.start(now: t0)
        var name = ByteBuffer()
        name.writeMultipleIntegers(UInt16(1 + 2 + 4 + 4), UInt8(ascii: "n"), UInt16(5), UInt32(truncatingIfNeeded: DistributionFlags.mandatory26.rawValue))
        name.writeString("c@vm")
        guard case .admit = handshake.receive(&name, now: t0).first else {
            Issue.record("'n' did not ask for admission")
            return
        }
        #expect(handshake.admit(.accept(cookie: Secret("X")), now: t0).count == 1)
        var complement = ByteBuffer()
        complement.writeMultipleIntegers(UInt16(9), UInt8(ascii: "c"), UInt32(DistributionFlags.mandatory26.rawValue >> 32), UInt32(99))
        var reply = ByteBuffer()
        reply.writeMultipleIntegers(UInt16(21), UInt8(ascii: "r"), UInt32(5))
        reply.writeBytes(ErlangHandshake.digest(cookie: Secret("X"), challenge: 42))
        complement.writeBuffer(&reply)
        guard case .completed(let result, _) = handshake.receive(&complement, now: t0).first else {
            Issue.record("the complement and reply did not complete the handshake")
            return
        }
        #expect(result.peerCreation == 99 && result.flags.contains(.v4NC))
    }

    @Test("statuses: 'alive' is answered with 'true' and the handshake goes on; 'nok' is a lost tie-break; 'not_allowed' a refusal")
    func statuses() {
        let local = ErlangIdentity(name: "py@vm", cookie: Secret("X"), creation: 1, flags: minimal)
        func afterStatus(_ status: String) -> [ErlangHandshake.Action] {
            var handshake = ErlangHandshake(role: .initiator(dialled: "b@vm"), local: local, stepTimeout: .seconds(7))
            _ = handshake.start(now: t0)
            var bytes = handshake.statusMessage(status)
            return handshake.receive(&bytes, now: t0)
        }
        let tcp = ErlangHandshake(role: .acceptor, local: local, stepTimeout: .seconds(7))
        #expect(afterStatus("alive").map(sent) == [tcp.statusMessage("true")])
        #expect(afterStatus("ok_simultaneous").isEmpty)
        guard case .failed(let nok, _) = afterStatus("nok").first, case .failed(let refused, _) = afterStatus("not_allowed").first else {
            Issue.record("expected failures")
            return
        }
        #expect(nok.reason == .simultaneous && refused.reason == .notAllowed)

        // The acceptor's side of a tie-break it wins: 'nok', and its own dial goes on.
        var acceptor = ErlangHandshake(role: .acceptor, local: local, stepTimeout: .seconds(7))
        _ = acceptor.start(now: t0)
        var name = hex("00 13 4e 00 00 00 0d 07 df 7f bd 6b 04 22 b4 00 04 63 40 76 6d")
        _ = acceptor.receive(&name, now: t0)
        guard case .failed(let error, let farewell) = acceptor.admit(.simultaneous, now: t0).first else {
            Issue.record("expected a refusal")
            return
        }
        #expect(error.reason == .simultaneous && farewell == acceptor.statusMessage("nok"))
    }

    @Test("inside OTP's TLS distribution every handshake message has a 4-byte length (as inet_tls_dist sends its name)")
    func tlsFraming() throws {
        let local = ErlangIdentity(name: "py@vm", cookie: Secret("X"), creation: 1, flags: minimal)
        var acceptor = ErlangHandshake(role: .acceptor, local: local, stepTimeout: .seconds(7), tls: true)
        _ = acceptor.start(now: t0)
        // What an OTP 25 node with -proto_dist inet_tls wrote first, decrypted: its name, 'N', 4-byte length.
        var name = hex("00 00 00 1d 4e 00 00 00 0d 07 df 7f bd 00 00 00 01 00 0e 65 64 62 67 40 6c 6f 63 61 6c 68 6f 73 74")
        guard case .admit(let peer, _)? = acceptor.receive(&name, now: t0).first else {
            Issue.record("the 4-byte framed name was not read")
            return
        }
        #expect(peer == "edbg@localhost")
        guard case .send(let reply)? = acceptor.admit(.accept(cookie: Secret("X")), now: t0).first else {
            Issue.record("no status and challenge")
            return
        }
        #expect(Array(reply.readableBytesView.prefix(7)) == [0, 0, 0, 3, 0x73, 0x6f, 0x6b], "status 'ok' with a 4-byte length")
        #expect(reply.getInteger(at: 7, as: UInt32.self) == UInt32(reply.readableBytes - 11), "then the challenge, with a 4-byte length")
    }
}
