@testable import Junction
import JunctionCore
@testable import JunctionNative
import JunctionTerm
import JunctionTransport
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

        var statusOfB = b.networkStatus().makeAsyncIterator()
        await a.request(.disconnectSystem("b@localhost"))
        #expect(kinds(await events(&status, 1)) == ["connectionClosed"])
        await #expect(throws: DisconnectedByRequest.self) { try await sender.send(.atom("two"), to: .name("sink", on: "b@localhost")) }
        // b may not come back on its own either, once it has seen the connection end.
        #expect(kinds(await events(&statusOfB, 1)) == ["connectionClosed"])
        let back = try b.spawn()
        await #expect(throws: (any Error).self) { try await back.send(.atom("three"), to: .pid(sender.pid)) }

        await a.request(.connectSystem("b@localhost"))
        #expect(kinds(await events(&status, 1)) == ["connectionEstablished"])
        try await sender.send(.atom("four"), to: .name("sink", on: "b@localhost"))
        #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("four"))
    }

    @Test("a native peer that stops reading holds the sender back and is reported stalled; when it reads again, every message arrives once, in order")
    func stalledNativePeer() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let a = try await startNode(try nodeConfig("a@localhost", stacks: [("native", registrar.port)], poolSize: 1, limits: "{stalledAfter: 100ms}"))
        let b = try await startNode(try nodeConfig("b@localhost", stacks: [("native", registrar.port)], poolSize: 1))
        defer { Task { await a.shutdown(); await b.shutdown() } }
        let sink = try b.spawn(name: "sink")
        let sender = try a.spawn()
        let destination = Destination.name("sink", on: "b@localhost")
        try await sender.send(.int(-1), to: destination)
        #expect(try await sink.receive(timeout: .seconds(10)).term() == .int(-1))
        let connection = try #require(b.connections.connection(Atom("a@localhost")) as? NativeConnection)
        for channel in connection.channels { try await channel.setOption(.autoRead, value: false) }
        var follower = StallFollower(node: a, peer: "b@localhost")

        // Distinct random kilobytes (a 1 MiB pool, far past zlib's 32 KiB window), so that
        // compression cannot shrink them into what the socket buffers hold.
        let count = 20_000
        let pool = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255) }
        let message = { @Sendable (i: Int) -> Term in
            let start = (i % 1024) * 1024
            return .tuple([.int(i), .binary(Array(pool[start..<start + 1024]))])
        }
        let flood = Task {
            for i in 0..<count { try await sender.send(message(i), to: destination) }
        }
        let stall = try #require(await follower.stall())
        #expect(stall.waiting == 1 && stall.row.queued == 1, "\(stall)")

        for channel in connection.channels {
            try await channel.setOption(.autoRead, value: true)
            channel.read()
        }
        try await flood.value
        let stalledFor = try #require(await follower.resume())
        #expect(stalledFor >= .milliseconds(100))
        for i in 0..<count {
            let term = try await sink.receive(timeout: .seconds(10)).term()
            guard term == message(i) else {
                Issue.record("message \(i) of \(count): \(term)")
                return
            }
        }
        let after = a.connectionStatuses().first { $0.peer == "b@localhost" }
        #expect(after?.state == "up" && after?.queued == 0, "\(String(describing: after))")
    }

    @Test("a native peer that answers heartbeats stays connected; once it falls silent it is lost")
    func silentNativePeer() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let config = try nodeConfig("n@localhost", stacks: [("native", registrar.port)], stackExtra: "silenceTimeout: 2s", poolSize: 1, handshakeTimeout: "1s")
        let node = try await startNode(config)
        defer { Task { await node.shutdown() } }
        var status = node.networkStatus().makeAsyncIterator()
        _ = await status.next()
        let address = try #require(node.listening["native"]?.first)
        let peer = try await RawPeer.connect(to: address, as: "raw@localhost", target: "n@localhost", cookie: "test-cookie", flags: [])
        // The idle node heartbeats every half second. The peer heartbeats every tenth of a
        // second from its event loop, from the handshake on, until the node's sixth: longer
        // than the two-second silence timeout, and the link stays open.
        var beat = ByteBuffer()
        Frame.write(kind: NativeFrameKind.heartbeat, streamKey: 0, into: &beat) { _ in }
        let answering = peer.channel.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(100)) { [beat] _ in
            peer.channel.writeAndFlush(beat, promise: nil)
        }
        #expect(kinds(await events(&status, 1)) == ["connectionEstablished"])
        var parser = FrameParser(maxFrameSize: 1 << 16)
        var heartbeats = 0
        var silent = false
        for await bytes in peer.received {
            try parser.consume(bytes) { frame in if frame.kind == NativeFrameKind.heartbeat { heartbeats += 1 } }
            if heartbeats >= 6, !silent {
                #expect(node.connection(to: "raw@localhost") != nil)
                answering.cancel()
                silent = true
            }
        }
        // Silent from then on: the node closes the link (ending the loop above), waits for a
        // rejoin that never comes, and reports the connection lost with the reason.
        #expect(silent)
        let lost = await events(&status, 1)
        guard case .connectionLost(let info, let reason)? = lost.first else {
            Issue.record("expected connectionLost, got \(lost)")
            return
        }
        #expect(info.node == "raw@localhost")
        #expect(reason.contains("received nothing, not even a heartbeat, for 2.0 s"), "\(reason)")
    }

    @Test("a failed acceptor is reported, bound again on the same port with the rules still in force; live connections go on")
    func acceptorRestart() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let node = try await startNode(try nodeConfig("n@localhost", stacks: [("native", registrar.port)]))
        let b = try await startNode(try nodeConfig("b@localhost", stacks: [("native", registrar.port)]))
        defer { Task { await node.shutdown(); await b.shutdown() } }
        var status = node.networkStatus().makeAsyncIterator()
        _ = await status.next()
        await node.request(.blockIp(IPAddress("127.0.0.2")!))
        let sink = try node.spawn(name: "sink")
        let sender = try b.spawn()
        try await sender.send(.atom("before"), to: .name("sink", on: "n@localhost"))
        #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("before"))
        #expect(kinds(await events(&status, 2)) == ["blockedIp", "connectionEstablished"])

        // The network fails under the stack: its listening socket closes.
        let address = try #require(node.listening["native"]?.first)
        let stack = try #require(node.runtime.withLock { $0.stacks["native"] })
        try await #require(stack.acceptors.withLock { $0.first?.channel }).close()
        let restart = await events(&status, 2)
        #expect(kinds(restart) == ["criticalNetworkFailure", "networkRestored"])
        #expect(restart.last == .networkRestored(stack: "native", address: "127.0.0.1:\(address.port!)"))

        #expect(await refusedBeforeAnyByte(try await RawPeer.open(to: address, from: "127.0.0.2")))
        let fresh = try await RawPeer.connect(to: address, from: "127.0.0.3", as: "raw@localhost", target: "n@localhost", cookie: "test-cookie", flags: [])
        fresh.channel.close(promise: nil)
        try await sender.send(.atom("after"), to: .name("sink", on: "n@localhost"))
        #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("after"))
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

    @Test("a stall is a period in which senders wait and none is let go: reported once, resumed with how long it lasted; a busy link that lets senders go is never stalled")
    func stallWatch() {
        let watch = StallWatch(period: .milliseconds(100))
        let connection = ObjectIdentifier(watch)
        func at(_ ms: Int64) -> NIODeadline { .uptimeNanoseconds(UInt64(ms) * 1_000_000) }

        // Busy, not stalled: senders wait often, but each period lets some go.
        #expect(watch.waits(connection, now: at(0)))
        #expect(!watch.waits(connection, now: at(10)))
        #expect(watch.letGo(connection, taken: true) == nil)
        #expect(watch.check(connection, now: at(100)) == .again)
        #expect(watch.letGo(connection, taken: true) == nil)
        #expect(watch.state(of: connection) == (0, false))
        // The check after the last sender went finds nobody waiting: the watch ends.
        #expect(watch.check(connection, now: at(200)) == .done)
        #expect(watch.check(connection, now: at(300)) == .done)

        // Stalled: a sender waits a whole period and none is let go; reported once.
        #expect(watch.waits(connection, now: at(1000)))
        #expect(watch.check(connection, now: at(1100)) == .stalled(waiting: 1))
        #expect(!watch.waits(connection, now: at(1150)))
        #expect(watch.check(connection, now: at(1200)) == .again)
        #expect(watch.state(of: connection) == (2, true))
        // The first sender let go ends it, stalled since the period began.
        #expect(watch.letGo(connection, taken: true) == at(1000))
        #expect(watch.letGo(connection, taken: true) == nil)
        #expect(watch.state(of: connection) == (0, false))
        #expect(watch.check(connection, now: at(1300)) == .done)

        // Closed while stalled: forgotten, no resume.
        #expect(watch.waits(connection, now: at(2000)))
        #expect(watch.check(connection, now: at(2100)) == .stalled(waiting: 1))
        #expect(watch.letGo(connection, taken: false) == nil)
        #expect(watch.state(of: connection) == (0, false))
        #expect(watch.check(connection, now: at(2200)) == .done)
    }
}
