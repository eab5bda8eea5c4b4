import Foundation
@testable import Junction
import JunctionCore
import JunctionErlang
import NIOPosix
import JunctionTerm
import Testing

@Suite("Bridges", .timeLimit(.minutes(1)))
struct BridgeTests {
    /// A `junction run` node on the gateway's registrar (its `echo` answers `{From, Msg}`
    /// and gen_server calls), started from a config file in `directory`.
    func nativeNode(_ name: String, registrarPort: Int, in directory: URL) async throws -> NodeProcess {
        let config = directory.appendingPathComponent("\(name).yaml")
        try """
            node: {name: \(name), cookie: {env: JUNCTION_COOKIE}}
            stacks:
              - name: native
                kind: native
                registrar: {host: 127.0.0.1, port: \(registrarPort)}
            """.write(to: config, atomically: true, encoding: .utf8)
        let environment = ["JUNCTION_COOKIE": "test-cookie", "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"]
        let node = try NodeProcess(binary: CommandLineTests.binary, arguments: ["run", "--config", config.path], environment: environment)
        try await node.waitForLine(containing: "is up")
        return node
    }

    @Test("an OTP node calls a native service through the gateway with gen_server:call; a native node gets replies from an Erlang process and an Erlang gen_server through it; a monitor on the bridge fires when the native node stops")
    func endToEnd() async throws {
        let gateway = try await Gateway.start(
            "gw@localhost",
            bridges: "[{name: svc, node: n1@localhost, process: echo}, {name: e1_echo, node: e1@localhost, process: echo}, {name: e1_rex, node: e1@localhost, process: rex}]")
        defer { Task { await gateway.stop() } }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("junction-bridge-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let n1 = try await nativeNode("n1@localhost", registrarPort: gateway.registrar.port, in: directory)
        defer { n1.signal(SIGKILL) }
        let n2 = try await startNode(try nodeConfig("n2@localhost", stacks: [("native", gateway.registrar.port)]))
        defer { Task { await n2.shutdown() } }

        // e1 serves `echo`, calls the bridged native service, then monitors the bridge.
        let e1 = try Erl.node("e1@localhost", cookie: "erlcookie", epmdPort: gateway.epmdPort, then: """
            register(echo, spawn(fun Loop() -> receive {From, Msg} -> From ! {echo, Msg}, Loop() end end)),
            G = 'gw@localhost',
            Call = gen_server:call({svc, G}, hello, 10000),
            io:format("call=~w~n", [Call]),
            Ref = erlang:monitor(process, {svc, G}),
            io:format("monitoring~n"),
            receive {'DOWN', Ref, process, Obj, Why} -> io:format("down=~w ~w~n", [Obj, Why]) after 30000 -> io:format("down=timeout~n") end,
            receive after infinity -> ok end
            """)
        defer { e1.signal(SIGKILL) }
        try await e1.waitForLine(containing: "monitoring")
        #expect(e1.standardOutput.contains("call={echo,hello}"), "\(e1.standardOutput)")

        // n2 -> gw -> e1's echo, whose reply goes to the proxy of n2's process on gw.
        let me = try n2.spawn()
        try await me.send(.tuple([.pid(me.pid), .atom("hi")]), to: .name("e1_echo", on: "gw@localhost"))
        #expect(try await me.receive(timeout: .seconds(10)).term() == .tuple([.atom("echo"), .atom("hi")]))
        #expect(gateway.node.bridges.proxyCount >= 2, "a proxy for e1's caller and one for n2's process")
        // n2 calls a gen_server on e1 (OTP's rpc server, rex) through the gateway.
        let node = try await n2.call(.tuple([.atom("call"), .atom("erlang"), .atom("node"), .list([]), .pid(me.pid)]), to: .name("e1_rex", on: "gw@localhost"))
        #expect(node == .atom("e1@localhost"))

        await n1.stop(signal: SIGTERM)
        try await e1.waitForLine(containing: "down=")
        #expect(e1.standardOutput.contains("down={svc,gw@localhost} noconnection"), "\(e1.standardOutput)")
    }
}

@Suite("Bridge identities", .timeLimit(.minutes(1)))
struct BridgeIdentityTests {
    @Test("the proxy of an Erlang process is retired when that process exits")
    func proxyRetiredWithItsProcess() async throws {
        let logs = LogCapture()
        let gateway = try await Gateway.start("gwp@localhost", bridges: "[{name: svc, node: np@localhost, process: echo}]", logger: logs.logger)
        defer { Task { await gateway.stop() } }
        let native = try await startNode(try nodeConfig("np@localhost", stacks: [("native", gateway.registrar.port)]))
        defer { Task { await native.shutdown() } }
        let service = Task { try await EchoService.run(try native.spawn(name: "echo")) }
        defer { service.cancel() }
        let erl = try Erl.node("e9@localhost", cookie: "erlcookie", epmdPort: gateway.epmdPort, then: """
            Self = self(),
            spawn(fun() -> Self ! {done, gen_server:call({svc, 'gwp@localhost'}, hi, 30000)} end),
            receive {done, R} -> io:format("call=~w~n", [R]) end,
            receive after infinity -> ok end
            """)
        defer { erl.signal(SIGKILL) }
        try await erl.waitForLine(containing: "call=")
        #expect(erl.standardOutput.contains("call={echo,hi}"), "\(erl.standardOutput)")
        // The caller has exited: the proxy's monitor fires and the proxy goes.
        await logs.waitFor("bridge: retired the proxy")
        #expect(gateway.node.bridges.proxyCount == 0)
    }

    /// From a short-lived OTP node: sends `{self(), hi}` to `bridge` on `gateway` and takes
    /// the `{echo, hi}` answer, monitors the bridge, tells it `stop`, and prints
    /// `echo=... down=Reason`.
    func callThenMonitor(_ bridge: String, on gateway: String, from client: String, epmdPort: Int) async throws -> String {
        try await Erl.run(client, cookie: "erlcookie", epmdPort: epmdPort, """
            Bridge = {\(bridge), '\(gateway)'},
            Bridge ! {self(), hi},
            Echo = receive {echo, M} -> M after 30000 -> timeout end,
            Ref = erlang:monitor(process, Bridge),
            Bridge ! stop,
            Down = receive {'DOWN', Ref, process, _, Why} -> Why after 30000 -> timeout end,
            io:format("echo=~w down=~w~n", [Echo, Down])
            """)
    }

    @Test("a monitor on a bridge to an Erlang process fires with that process's exit reason when it exits")
    func monitorFarProcess() async throws {
        let gateway = try await Gateway.start("gwm@localhost", bridges: "[{name: e_svc, node: e21@localhost, process: svc}]")
        defer { Task { await gateway.stop() } }
        let far = try Erl.node("e21@localhost", cookie: "erlcookie", epmdPort: gateway.epmdPort, then: """
            register(svc, spawn(fun Loop() -> receive {From, Msg} -> From ! {echo, Msg}, Loop(); stop -> exit(stopped_by_test) end end)),
            io:format("serving~n"),
            receive after infinity -> ok end
            """)
        defer { far.signal(SIGKILL) }
        try await far.waitForLine(containing: "serving")
        let printed = try await callThenMonitor("e_svc", on: "gwm@localhost", from: "e22@localhost", epmdPort: gateway.epmdPort)
        #expect(printed.contains("echo=hi down=stopped_by_test"), "\(printed)")
    }

    @Test("a monitor on a bridge to a native process fires with that process's exit reason when it exits")
    func monitorFarNativeProcess() async throws {
        let gateway = try await Gateway.start("gwn@localhost", bridges: "[{name: n_svc, node: nm@localhost, process: svc}]")
        defer { Task { await gateway.stop() } }
        let native = try await startNode(try nodeConfig("nm@localhost", stacks: [("native", gateway.registrar.port)]))
        defer { Task { await native.shutdown() } }
        let svc = try native.spawn(name: "svc")
        let served = Task {
            // Answers one {From, Msg}, then exits when told to stop.
            let first = try await svc.receive().term()
            if case .tuple(let fields) = first, case .pid(let from) = fields[0] { try await svc.send(.tuple([.atom("echo"), fields[1]]), to: .pid(from)) }
            _ = try await svc.receive()
            svc.exit()
        }
        defer { served.cancel() }
        let printed = try await callThenMonitor("n_svc", on: "gwn@localhost", from: "e23@localhost", epmdPort: gateway.epmdPort)
        #expect(printed.contains("echo=hi down=normal"), "\(printed)")
    }

    @Test("proxies are bounded: past limits.bridgeProxies the oldest is retired, and a pid travelling home is itself again")
    func bounded() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let node = try await startNode(try nodeConfig("gwb@localhost", stacks: [("native", registrar.port)], limits: "{bridgeProxies: 2}"))
        defer { Task { await node.shutdown() } }
        let far: [Pid] = (1...3).map { Pid(node: "x@localhost", id: UInt32($0), creation: 1) }
        var minted: [ProcessHandle] = []
        var retired: [ProcessHandle] = []
        let mapped = node.bridges.state.withLock { state in
            node.mapIdentities(.list(far.map(Term.pid)), toward: "y@localhost", state: &state, minted: &minted, retired: &retired)
        }
        #expect(minted.count == 3 && retired.map(\.pid) == [minted[0].pid])
        #expect(node.bridges.proxyCount == 2)
        guard case .list(let proxies) = mapped else {
            Issue.record("not a list: \(mapped)")
            return
        }
        #expect(proxies == minted.map { .pid($0.pid) })
        // Back toward x, the live proxies are x's own pids again; the retired one is not.
        let home = node.bridges.state.withLock { state in
            node.mapIdentities(mapped, toward: "x@localhost", state: &state, minted: &minted, retired: &retired)
        }
        #expect(home == .list([.pid(minted[0].pid), .pid(far[1]), .pid(far[2])]))
    }
}

@Suite("Several registrars", .timeLimit(.minutes(1)))
struct SeveralRegistrarsTests {
    @Test("a gateway with two native clusters on their own registrars and an Erlang cluster reaches each through the stack its routes pick, and says which registrar answered")
    func threeClusters() async throws {
        let first = try await startRegistrar()
        let second = try await startRegistrar()
        let epmd = try await EpmdServer.start(port: 0, group: MultiThreadedEventLoopGroup.singleton, logger: quietLogger)
        let epmdPort = epmd.address!.port!
        defer { Task { await first.shutdown(); await second.shutdown(); await epmd.shutdown() } }
        let config = try ConfigLoader.load(yaml: """
            node: {name: gw3@localhost, cookie: {env: TEST_COOKIE}}
            stacks:
              - {name: native, kind: native, registrar: {host: 127.0.0.1, port: \(first.port)}}
              - {name: cluster-b, kind: native, registrar: {host: 127.0.0.1, port: \(second.port)}}
              - {name: otp, kind: erlang, acceptors: [{host: 127.0.0.1, port: 0}], erlang: {epmdPort: \(epmdPort)}}
            routes:
              - {match: "^b", resolver: cluster-b}
              - {match: "^e[0-9]+@", resolver: otp, cookie: {env: ERLANG_COOKIE}}
            """)
        let gateway = try await Node.start(config: config, environment: ["TEST_COOKIE": "test-cookie", "ERLANG_COOKIE": "erlcookie"], logger: quietLogger)
        defer { Task { await gateway.shutdown() } }
        let a1 = try await startNode(try nodeConfig("a1@localhost", stacks: [("native", first.port)]))
        let b1 = try await startNode(try nodeConfig("b1@localhost", stacks: [("native", second.port)]))
        defer { Task { await a1.shutdown(); await b1.shutdown() } }
        let e5 = try Erl.node("e5@localhost", cookie: "erlcookie", epmdPort: epmdPort, then: """
            register(echo, spawn(fun Loop() -> receive {From, Msg} -> From ! {echo, Msg}, Loop() end end)),
            io:format("serving~n"),
            receive after infinity -> ok end
            """)
        defer { e5.signal(SIGKILL) }
        try await e5.waitForLine(containing: "serving")

        let services = [a1, b1].map { node in Task { try await EchoService.run(try node.spawn(name: "echo")) } }
        defer { for service in services { service.cancel() } }
        let me = try gateway.spawn()
        for peer: NodeName in ["a1@localhost", "b1@localhost", "e5@localhost"] {
            try await me.send(.tuple([.pid(me.pid), .atom(Atom(peer.alive))]), to: .name("echo", on: peer))
            #expect(try await me.receive(timeout: .seconds(10)).term() == .tuple([.atom("echo"), .atom(Atom(peer.alive))]), "\(peer)")
        }
        #expect(gateway.connection(to: "a1@localhost")?.stack == "native")
        #expect(gateway.connection(to: "b1@localhost")?.stack == "cluster-b")
        #expect(gateway.erlangConnection(to: "e5@localhost") != nil)

        let viaSecond = await gateway.resolveCandidates(for: "b1@localhost")
        #expect(viaSecond.first?.hasPrefix("1. '^b': registrar at localhost:\(second.port) (stack cluster-b) answered localhost:") == true, "\(viaSecond)")
        let viaFirst = await gateway.resolveCandidates(for: "a1@localhost")
        #expect(viaFirst.first?.hasPrefix("1. default resolver: registrar at localhost:\(first.port) (stack native) answered localhost:") == true, "\(viaFirst)")
        let viaEpmd = await gateway.resolveCandidates(for: "e5@localhost")
        #expect(viaEpmd.first?.hasPrefix("1. '^e[0-9]+@': epmd at localhost:\(epmdPort) (stack otp) answered localhost:") == true, "\(viaEpmd)")
    }
}
