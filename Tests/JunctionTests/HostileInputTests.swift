import JunctionCore
import JunctionErlang
import JunctionNative
import NIOCore
import NIOPosix
import Testing

/// Garbage, truncated and oversized input on the listening ports this file does not cover
/// elsewhere (the native acceptor and the Erlang acceptor have their own tests): the
/// embedded epmd and the embedded registrar close the bad connection and go on serving.
@Suite("Hostile input", .timeLimit(.minutes(1)))
struct HostileInputTests {
    /// Writes `bytes`, then waits until the server closes or the bytes are answered and
    /// the connection is closed from here.
    func throwAt(_ port: Int, _ bytes: [UInt8], closeAfterWrite: Bool = false) async throws {
        let peer = try await RawPeer.open(to: try SocketAddress(ipAddress: "127.0.0.1", port: port))
        try? await peer.channel.writeAndFlush(ByteBuffer(bytes: bytes))
        if closeAfterWrite { try? await peer.channel.close() }
        for await _ in peer.received {}
    }

    static let garbage: [[UInt8]] = [
        Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8),
        [0, 3, 120, 1],  // ALIVE2 cut short
        [0, 1, 99],  // an unknown request
        [255, 255] + [UInt8](repeating: 0x41, count: 70_000),  // the longest length, then more
        (0..<512).map { _ in UInt8.random(in: 0...255) },
    ]

    @Test("the embedded epmd survives garbage, truncated and oversized requests", arguments: garbage.indices)
    func epmd(_ index: Int) async throws {
        let server = try await EpmdServer.start(port: 0, group: MultiThreadedEventLoopGroup.singleton, logger: quietLogger)
        defer { Task { await server.shutdown() } }
        let port = try #require(server.address?.port)
        let client = EpmdClient(port: port, group: MultiThreadedEventLoopGroup.singleton)
        let registration = try await client.register(EpmdProtocol.Entry(alive: "steady", port: 4242))
        defer { Task { await registration.close() } }
        try await throwAt(port, Self.garbage[index], closeAfterWrite: index == 1)
        #expect(try await client.resolve("steady")?.port == 4242)
    }

    @Test("the embedded registrar survives garbage, truncated and oversized requests", arguments: garbage.indices)
    func registrar(_ index: Int) async throws {
        let server = try await startRegistrar()
        defer { Task { await server.shutdown() } }
        let node = try await startNode(try nodeConfig("steady@localhost", stacks: [("native", server.port)]))
        defer { Task { await node.shutdown() } }
        try await throwAt(server.port, Self.garbage[index], closeAfterWrite: index == 1)
        let registrar = EmbeddedRegistrar(stack: "native", settings: RegistrarSettings(port: server.port), group: MultiThreadedEventLoopGroup.singleton, logger: quietLogger)
        let route = try await registrar.resolve("steady@localhost")
        #expect(route.port == node.listening["native"]?.first?.port)
    }
}
