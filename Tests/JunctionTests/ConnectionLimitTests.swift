import Junction
import JunctionCore
import NIOCore
import NIOPosix
import Testing

@Suite("Connection limits", .timeLimit(.minutes(2)))
struct ConnectionLimitTests {
    @Test("30 peers taking turns under a soft limit of 10 and a hard limit of 12: least recently used evicted in order, refusals at the hard limit, one event per crossing")
    func softAndHard() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        // One link per connection, so no joining links count as handshaking at the end.
        let hub = try await startNode(
            try nodeConfig("hub@localhost", stacks: [("native", registrar.port)], poolSize: 1, limits: "{softConnections: 10, hardConnections: 12}"))
        defer { Task { await hub.shutdown() } }
        let sink = try hub.spawn(name: "sink")
        var status = hub.networkStatus().makeAsyncIterator()
        _ = await status.next()

        var peers: [Node] = []
        defer { for peer in peers { Task { await peer.shutdown() } } }
        var closed: [String] = []
        var softEvents = 0
        for index in 1...30 {
            let peer = try await startNode(try nodeConfig("p\(index)@localhost", stacks: [("native", registrar.port)], poolSize: 1))
            peers.append(peer)
            try await peer.spawn().send(.int(index), to: .name("sink", on: "hub@localhost"))
            #expect(try await sink.receive(timeout: .seconds(10)).term() == .int(index))
            // Each turn: the new connection, and past 10 one eviction.
            let expected = index > 10 ? 2 : 1
            var seen = 0
            while seen < expected, let update = await status.next() {
                guard case .event(let event) = update else { continue }
                switch event {
                case .connectionEstablished: seen += 1
                case .connectionClosed(let info): closed.append(info.node); seen += 1
                case .softConnectionLimitReached: softEvents += 1
                default: break
                }
            }
        }
        #expect(closed == (1...20).map { "p\($0)@localhost" }, "evicted least recently used first")
        #expect(softEvents == 1)

        // Hard limit: 10 live connections plus 2 sockets still handshaking make 12.
        let address = try #require(hub.listening["native"]?.first)
        let pending = [try await RawPeer.open(to: address), try await RawPeer.open(to: address)]
        // The hub accepts on its own event loops: once it has answered their hellos, it
        // has counted both.
        for (index, peer) in pending.enumerated() {
            try await peer.helloAnswered(as: try NodeName("pending\(index)@localhost"), target: "hub@localhost", cookie: "test-cookie")
        }
        #expect(hub.connectionLoad == 12)
        var refusedQuietly = 0
        for _ in 0..<3 {
            let refused = try await RawPeer.open(to: address)
            var bytes = 0
            for await chunk in refused.received { bytes += chunk.readableBytes }
            if bytes == 0 { refusedQuietly += 1 }
        }
        #expect(refusedQuietly == 3)
        // Refused, not timed out: the two opened before them are still waiting.
        #expect(pending.allSatisfy { $0.channel.isActive })
        for peer in pending { try? await peer.channel.close() }
        var hardEvents = 0
        while let update = await status.next() {
            if case .event(.hardConnectionLimitReached(let limit)) = update {
                hardEvents += 1
                #expect(limit == 12)
                break
            }
        }
        #expect(hardEvents == 1)
        // Below the hard limit again, the hub dials out (an evicted peer) as usual.
        let back = try peers[0].spawn(name: "back")
        try await hub.spawn().send(.atom("again"), to: .name("back", on: "p1@localhost"))
        #expect(try await back.receive(timeout: .seconds(10)).term() == .atom("again"))
    }
}
