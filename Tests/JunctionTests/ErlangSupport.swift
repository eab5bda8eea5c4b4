import Foundation
import JunctionCore
import JunctionErlang
import Logging
import NIOCore
import NIOPosix

/// Real OTP peers for interop tests: `erl` nodes and `epmd` started on loopback with
/// their own epmd port, stopped by pid. They fail (never skip) when erlang-nox is missing.
enum Erl {
    static var baseEnvironment: [String: String] {
        let environment = ProcessInfo.processInfo.environment
        return ["PATH": environment["PATH"] ?? "/usr/bin:/bin", "HOME": environment["HOME"] ?? NSTemporaryDirectory()]
    }

    /// A long-running `erl -sname NAME` (distribution bound to loopback) registered with
    /// the epmd on `epmdPort`; it prints `ready` once distribution is up, then runs
    /// `then` (Erlang expressions).
    static func node(_ name: String, cookie: String, epmdPort: Int, then: String = "receive after infinity -> ok end", extra: [String] = []) throws -> NodeProcess {
        var environment = baseEnvironment
        environment["ERL_EPMD_PORT"] = "\(epmdPort)"
        let script = "io:format(\"ready~n\"), \(then)"
        return try NodeProcess(
            binary: URL(fileURLWithPath: "/usr/bin/env"),
            arguments: [
                "erl", "-sname", name, "-setcookie", cookie, "-start_epmd", "false", "-kernel", "inet_dist_use_interface", "{127,0,0,1}",
                "-noshell", "-eval", script,
            ] + extra,
            environment: environment)
    }

    /// Runs `script` on a short-lived `erl -sname NAME` node and returns what it printed.
    static func run(_ name: String, cookie: String, epmdPort: Int, extra: [String] = [], _ script: String) async throws -> String {
        let node = try node(name, cookie: cookie, epmdPort: epmdPort, then: "\(script), halt().", extra: extra)
        let status = await node.exitStatus()
        guard status == 0 else {
            throw CommandLineFailure(message: "erl \(name) exited with \(status) (is erlang-nox installed?): \(node.standardOutput)\(node.output)")
        }
        return node.standardOutput
    }

    /// A real `epmd` on a free loopback port, started in the foreground; returns once it
    /// listens (its second debug level says so).
    static func epmd() async throws -> (process: NodeProcess, port: Int) {
        let port = try await freePort()
        let process = try NodeProcess(binary: URL(fileURLWithPath: "/usr/bin/env"), arguments: ["epmd", "-port", "\(port)", "-d", "-d"], environment: baseEnvironment)
        try await process.waitForLine(containing: "entering the main select() loop")
        return (process, port)
    }

    /// A loopback port nothing listens on (the kernel picks it, then it is released).
    /// A free loopback port for a server a node must start itself (a fixed port, as an
    /// epmd or a registrar has). It is drawn below the kernel's ephemeral range
    /// (32768...60999 here), so no socket another test binds to port 0 can take it
    /// between this probe and the node's bind.
    static func freePort() async throws -> Int {
        for _ in 0..<50 {
            let port = Int.random(in: 20_000..<32_768)
            guard let channel = try? await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: port).get() else {
                continue
            }
            try await channel.close()
            return port
        }
        throw CommandLineFailure(message: "no free port below the ephemeral range after 50 tries")
    }
}

/// A hand-driven Erlang distribution peer for protocol tests: the real handshake state
/// machine over a real socket, then whatever packets a test crafts.
final class RawErlangPeer: Sendable {
    let channel: any Channel
    let received: AsyncStream<ByteBuffer>

    /// Connects to `address` and completes the handshake as `name` dialling `target`;
    /// `early` bytes go out in the same write as the challenge reply, so the node reads
    /// them the moment the connection is up.
    static func connect(to address: SocketAddress, as name: NodeName, target: NodeName, cookie: String, early: [UInt8] = []) async throws -> RawErlangPeer {
        let (stream, sink) = AsyncStream.makeStream(of: ByteBuffer.self)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(RawPeer.Collector(sink: sink)) }
            }
            .connect(to: address).get()
        var machine = ErlangHandshake(
            role: .initiator(dialled: target),
            local: ErlangIdentity(name: name, cookie: Secret(cookie), creation: 1, flags: DistributionFlags.mandatory26.union(.mandatory25Digest)),
            stepTimeout: .seconds(5))
        if case .send(let bytes) = machine.start(now: .now()) { try await channel.writeAndFlush(bytes) }
        for await var bytes in stream {
            for action in machine.receive(&bytes, now: .now()) {
                switch action {
                case .send(var reply):
                    if reply.getInteger(at: reply.readerIndex + 2, as: UInt8.self) == UInt8(ascii: "r") { reply.writeBytes(early) }
                    try await channel.writeAndFlush(reply)
                case .completed: return RawErlangPeer(channel: channel, received: stream, leftover: Array(machine.leftover.readableBytesView))
                case .failed(let error, _): throw error
                case .admit: break
                }
            }
        }
        throw DistributionError("the node closed the connection during the handshake")
    }

    /// Bytes that arrived with the end of the handshake.
    let leftover: [UInt8]

    init(channel: any Channel, received: AsyncStream<ByteBuffer>, leftover: [UInt8]) {
        self.channel = channel
        self.received = received
        self.leftover = leftover
    }

    /// Writes one packet (`Len:32` added).
    func writePacket(_ payload: [UInt8]) async throws {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(payload.count))
        buffer.writeBytes(payload)
        try await channel.writeAndFlush(buffer)
    }

    /// Waits until the node closes the connection; returns every byte it sent until then.
    func bytesUntilClosed() async -> [UInt8] {
        var all = leftover
        for await bytes in received { all += bytes.readableBytesView }
        return all
    }
}
