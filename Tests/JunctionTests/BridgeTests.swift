import Foundation
@testable import Junction
import JunctionCore
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

    @Test("an OTP node calls a native service through the gateway with gen_server:call; a native node gets a reply from an Erlang process through it; a monitor on the bridge fires when the native node stops")
    func endToEnd() async throws {
        let gateway = try await Gateway.start(
            "gw@localhost",
            bridges: "[{name: svc, node: n1@localhost, process: echo}, {name: e1_echo, node: e1@localhost, process: echo}]")
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

        await n1.stop(signal: SIGTERM)
        try await e1.waitForLine(containing: "down=")
        #expect(e1.standardOutput.contains("down={svc,gw@localhost} noconnection"), "\(e1.standardOutput)")
    }
}
