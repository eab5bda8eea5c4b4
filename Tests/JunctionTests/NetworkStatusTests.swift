import Junction
import JunctionCore
import JunctionNative
import JunctionTerm
import NIOCore
import Testing

@Suite("Network status", .timeLimit(.minutes(1)))
struct NetworkStatusTests {
    /// The next `count` events of a subscription (after its snapshot).
    func events(_ iterator: inout AsyncStream<NetworkStatusUpdate>.Iterator, _ count: Int) async -> [NetworkEvent] {
        var out: [NetworkEvent] = []
        while out.count < count, let update = await iterator.next() {
            if case .event(let event) = update { out.append(event) }
        }
        return out
    }

    func kinds(_ events: [NetworkEvent]) -> [String] {
        events.map { String(describing: $0).split(separator: " ").first.map(String.init) ?? "" }
    }

    @Test("a subscriber gets a snapshot, then established and closed; disconnectSystem holds both directions until connectSystem")
    func disconnectAndConnect() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let a = try await startNode(try nodeConfig("a@localhost", stacks: [("native", registrar.port)]))
        let b = try await startNode(try nodeConfig("b@localhost", stacks: [("native", registrar.port)]))
        defer { Task { await a.shutdown(); await b.shutdown() } }
        var status = a.networkStatus().makeAsyncIterator()
        guard case .snapshot(let snapshot)? = await status.next() else {
            Issue.record("the first update is not a snapshot")
            return
        }
        #expect(snapshot.connections.isEmpty)

        let sink = try b.spawn(name: "sink")
        let sender = try a.spawn()
        try await sender.send(.atom("one"), to: .name("sink", on: "b@localhost"))
        #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("one"))
        let established = await events(&status, 1)
        #expect(established == [.connectionEstablished(PeerInfo(stack: "native", node: "b@localhost", address: established.first.map(address) ?? ""))])

        await a.request(.disconnectSystem("b@localhost"))
        #expect(kinds(await events(&status, 1)) == ["connectionClosed"])
        await #expect(throws: DisconnectedByRequest.self) { try await sender.send(.atom("two"), to: .name("sink", on: "b@localhost")) }
        // b may not come back on its own either.
        let back = try b.spawn()
        await #expect(throws: (any Error).self) { try await back.send(.atom("three"), to: .pid(sender.pid)) }

        await a.request(.connectSystem("b@localhost"))
        #expect(kinds(await events(&status, 1)) == ["connectionEstablished"])
        try await sender.send(.atom("four"), to: .name("sink", on: "b@localhost"))
        #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("four"))
    }

    func address(_ event: NetworkEvent) -> String {
        if case .connectionEstablished(let peer) = event { return peer.address }
        return ""
    }

    /// True when the node closed the connection without sending a byte.
    func refusedBeforeAnyByte(_ peer: RawPeer) async -> Bool {
        var bytes = 0
        for await chunk in peer.received { bytes += chunk.readableBytes }
        return bytes == 0
    }

    @Test("IP rules on real sockets: allow 127.0.0.2 then block 127.0.0.0/24 blocks it; the reverse order lets it in; an allowed system beats a net block; blockSystem undoes it")
    func rulesOnSockets() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let node = try await startNode(try nodeConfig("n@localhost", stacks: [("native", registrar.port)]))
        defer { Task { await node.shutdown() } }
        let address = try #require(node.listening["native"]?.first)
        var status = node.networkStatus().makeAsyncIterator()
        _ = await status.next()

        await node.request(.allowIp(IPAddress("127.0.0.2")!))
        await node.request(.blockIpNet(IPNetwork("127.0.0.0/24")!))
        #expect(kinds(await events(&status, 2)) == ["allowedIp", "blockedIpNet"])
        #expect(await refusedBeforeAnyByte(try await RawPeer.open(to: address, from: "127.0.0.2")))

        // The reverse order: the later allow wins for 127.0.0.2 only.
        await node.request(.allowIp(IPAddress("127.0.0.2")!))
        let allowed = try await RawPeer.connect(to: address, from: "127.0.0.2", as: "raw@localhost", target: "n@localhost", cookie: "test-cookie", flags: [])
        allowed.channel.close(promise: nil)
        #expect(await refusedBeforeAnyByte(try await RawPeer.open(to: address, from: "127.0.0.3")))

        // An allowed system gets through a net block; another name from the same address does not.
        await node.request(.allowSystem("sys@localhost"))
        await node.request(.blockIpNet(IPNetwork("127.0.0.0/8")!))
        let system = try await RawPeer.connect(to: address, from: "127.0.0.4", as: "sys@localhost", target: "n@localhost", cookie: "test-cookie", flags: [])
        // Refused at admission: a reject frame, or the close that follows it if our peer
        // was still writing.
        let refused = await #expect(throws: (any Error).self) {
            try await RawPeer.connect(to: address, from: "127.0.0.4", as: "other@localhost", target: "n@localhost", cookie: "test-cookie", flags: [])
        }
        if let handshake = refused as? HandshakeError { #expect(handshake.reason == .notAllowed) }
        #expect(node.connection(to: "other@localhost") == nil)
        // blockSystem undoes the allow and closes its live connection; with the allow-list
        // empty again, the net block refuses the address before any byte.
        await node.request(.blockSystem("sys@localhost"))
        for await _ in system.received {}
        #expect(await refusedBeforeAnyByte(try await RawPeer.open(to: address, from: "127.0.0.4")))
        let me = try node.spawn()
        let denied = await #expect(throws: AccessDenied.self) { try await me.send(.atom("x"), to: .name("echo", on: "sys@localhost")) }
        #expect(denied?.rule == "block system sys@localhost")
    }

    @Test("access rules come from the config file, in order")
    func rulesFromConfig() throws {
        let config = try ConfigLoader.load(yaml: """
            node: {name: n@localhost, cookie: {env: C}}
            stacks: [{name: native, kind: native}]
            access:
              - allowIp: 10.0.0.1
              - blockIpNet: 10.0.0.0/24
              - allowSystem: a@host
            """)
        #expect(config.access.decision(system: nil, address: IPAddress("10.0.0.1")) == .blocked("block net 10.0.0.0/24"))
        #expect(config.access.decision(system: "a@host", address: IPAddress("10.0.0.1")) == .allowed)
        let bad = #expect(throws: ConfigError.self) {
            try ConfigLoader.load(yaml: "node: {name: n@localhost, cookie: {env: C}}\nstacks: [{name: native, kind: native}]\naccess: [{blockIpNet: 10.0.0.0/40}]")
        }
        #expect(bad?.keyPath == "access[0].blockIpNet")
    }
}
