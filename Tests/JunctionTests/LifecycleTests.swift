import Foundation
import Junction
import JunctionCore
import JunctionTerm
import Testing

/// Lost connections: retained messages, redial with backoff, dropped after the last
/// attempt; on both stacks, with real peers killed and restarted.
@Suite("Connection lifecycle", .timeLimit(.minutes(1)))
struct LifecycleTests {
    /// The next event of a subscription, skipping its snapshot.
    func nextEvent(_ iterator: inout AsyncStream<NetworkStatusUpdate>.Iterator) async -> NetworkEvent? {
        while let update = await iterator.next() {
            if case .event(let event) = update { return event }
        }
        return nil
    }

    func kind(_ event: NetworkEvent?) -> String {
        event.map { String(describing: $0).split(separator: " ").first.map(String.init) ?? "" } ?? "none"
    }

    /// An OTP node that registers `sink` (collecting `{seq, I}` until `{From, done}`)
    /// before it starts distribution, so nothing sent on connect can miss it.
    func sinkNode(_ name: String, epmdPort: Int) throws -> NodeProcess {
        var environment = Erl.baseEnvironment
        environment["ERL_EPMD_PORT"] = "\(epmdPort)"
        let script = """
            Sink = fun Loop(Acc) -> receive {seq, I} -> Loop([I | Acc]); {From, done} -> From ! {got, lists:reverse(Acc)}, Loop([]) end end,
            register(sink, spawn(fun() -> Sink([]) end)),
            {ok, _} = net_kernel:start(['\(name)', shortnames]),
            io:format("ready~n"),
            receive after infinity -> ok end
            """
        return try NodeProcess(
            binary: URL(fileURLWithPath: "/usr/bin/env"),
            arguments: ["erl", "-setcookie", "erlcookie", "-start_epmd", "false", "-kernel", "inet_dist_use_interface", "{127,0,0,1}", "-noshell", "-eval", script],
            environment: environment)
    }

    @Test("Erlang stack: established, lost when the OTP node dies, established again when it is back; messages sent meanwhile arrive once, in order")
    func erlangLostAndBack() async throws {
        let gateway = try await Gateway.start("jl@localhost", reconnect: "{attempts: 40, base: 50ms, cap: 200ms}")
        defer { Task { await gateway.stop() } }
        var status = gateway.node.networkStatus().makeAsyncIterator()
        let first = try sinkNode("el@localhost", epmdPort: gateway.epmdPort)
        defer { first.signal(SIGKILL) }
        try await first.waitForLine(containing: "ready")
        let me = try gateway.node.spawn()
        let sink = Destination.name("sink", on: "el@localhost")
        try await me.send(.tuple([.atom("seq"), .int(0)]), to: sink)
        #expect(kind(await nextEvent(&status)) == "connectionEstablished")

        await first.stop(signal: SIGKILL)
        #expect(kind(await nextEvent(&status)) == "connectionLost")
        // Retained while the node is away: the sends return at once.
        for i in 1...100 { try await me.send(.tuple([.atom("seq"), .int(i)]), to: sink) }
        let second = try sinkNode("el@localhost", epmdPort: gateway.epmdPort)
        defer { second.signal(SIGKILL) }
        #expect(kind(await nextEvent(&status)) == "connectionEstablished")
        try await me.send(.tuple([.pid(me.pid), .atom("done")]), to: sink)
        #expect(try await me.receive(timeout: .seconds(20)).term() == .tuple([.atom("got"), .canonicalList((1...100).map { .int($0) })]))
    }

    @Test("a peer that does not come back is dropped after the last attempt, with the number of messages dropped")
    func erlangDropped() async throws {
        let gateway = try await Gateway.start("jd@localhost", reconnect: "{attempts: 3, base: 20ms, cap: 50ms}")
        defer { Task { await gateway.stop() } }
        var status = gateway.node.networkStatus().makeAsyncIterator()
        let erl = try sinkNode("ed@localhost", epmdPort: gateway.epmdPort)
        try await erl.waitForLine(containing: "ready")
        let me = try gateway.node.spawn()
        let sink = Destination.name("sink", on: "ed@localhost")
        try await me.send(.atom("hello"), to: sink)
        #expect(kind(await nextEvent(&status)) == "connectionEstablished")
        await erl.stop(signal: SIGKILL)
        #expect(kind(await nextEvent(&status)) == "connectionLost")
        for i in 1...7 { try await me.send(.int(i), to: sink) }
        guard case .connectionDropped(let peer, let dropped)? = await nextEvent(&status) else {
            Issue.record("expected connectionDropped")
            return
        }
        #expect(peer.node == "ed@localhost" && dropped == 7)
    }

    @Test("native stack: a `junction run` peer killed and restarted; lost, then established again, and what was sent meanwhile is answered in order")
    func nativeLostAndBack() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("junction-lifecycle-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("b.yaml")
        try """
            node: {name: nb@localhost, cookie: {env: JUNCTION_COOKIE}}
            stacks:
              - name: native
                kind: native
                registrar: {host: 127.0.0.1, port: \(registrar.port)}
            """.write(to: config, atomically: true, encoding: .utf8)
        let environment = ["JUNCTION_COOKIE": "test-cookie", "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"]
        func startB() async throws -> NodeProcess {
            let b = try NodeProcess(binary: CommandLineTests.binary, arguments: ["run", "--config", config.path], environment: environment)
            try await b.waitForLine(containing: "is up")
            return b
        }
        let first = try await startB()
        defer { first.signal(SIGKILL) }

        let a = try await startNode(try nodeConfig("na@localhost", stacks: [("native", registrar.port)]))
        defer { Task { await a.shutdown() } }
        var status = a.networkStatus().makeAsyncIterator()
        let me = try a.spawn()
        let echo = Destination.name("echo", on: "nb@localhost")
        try await me.send(.tuple([.pid(me.pid), .int(0)]), to: echo)
        #expect(try await me.receive(timeout: .seconds(10)).term() == .tuple([.atom("echo"), .int(0)]))
        #expect(kind(await nextEvent(&status)) == "connectionEstablished")

        await first.stop(signal: SIGKILL)
        // The links' rejoins give up first, then the connection counts as lost.
        #expect(kind(await nextEvent(&status)) == "connectionLost")
        for i in 1...50 { try await me.send(.tuple([.pid(me.pid), .int(i)]), to: echo) }
        let second = try await startB()
        defer { second.signal(SIGKILL) }
        #expect(kind(await nextEvent(&status)) == "connectionEstablished")
        for i in 1...50 {
            #expect(try await me.receive(timeout: .seconds(10)).term() == .tuple([.atom("echo"), .int(i)]))
        }
    }

    /// A peer redialling a lost connection sends what it retained the moment it is
    /// accepted (`junction run` lost those messages when it spawned 'echo' after its
    /// stacks accepted). The one wait here is bounded: it shows that something does not
    /// happen (no handshake completes) while the services are being set up.
    @Test("a peer that connects while a node sets up its services is accepted after them, and its first message is answered")
    func servicesBeforeAccepting() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let friend = try await startNode(try nodeConfig("nf@localhost", stacks: [("native", registrar.port)]))
        defer { Task { await friend.shutdown() } }
        let me = try friend.spawn()
        let status = friend.networkStatus()
        let (node, (sending, acceptedEarly, echo)) = try await Node.start(
            config: try nodeConfig("ns@localhost", stacks: [("native", registrar.port)]), environment: ["TEST_COOKIE": "test-cookie"], logger: quietLogger
        ) { node in
            // Registered and bound: the friend's dial connects, and its handshake waits.
            let sending = Task { try await me.send(.tuple([.pid(me.pid), .atom("first")]), to: .name("echo", on: "ns@localhost")) }
            let accepted = await withTaskGroup(of: Bool.self) { group in
                group.addTask {
                    var updates = status.makeAsyncIterator()
                    while let update = await updates.next() {
                        if case .event(.connectionEstablished) = update { return true }
                    }
                    return false
                }
                group.addTask {
                    try? await Task.sleep(for: .seconds(1))
                    return false
                }
                defer { group.cancelAll() }
                return await group.next() ?? false
            }
            return (sending, accepted, try node.spawn(name: "echo"))
        }
        defer { Task { await node.shutdown() } }
        let service = Task { try await EchoService.run(echo) }
        defer { service.cancel() }
        #expect(!acceptedEarly, "a peer was accepted before the node's services existed")
        try await sending.value
        #expect(try await me.receive(timeout: .seconds(10)).term() == .tuple([.atom("echo"), .atom("first")]))
    }
}
