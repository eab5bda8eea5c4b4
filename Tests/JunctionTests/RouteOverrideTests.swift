import Junction
import JunctionCore
import JunctionNative
import JunctionTerm
import Logging
import Testing

/// Per-route overrides (cookie, atom mapping, log level, flags), on real sockets.
@Suite("Route overrides", .timeLimit(.minutes(1)))
struct RouteOverrideTests {
    @Test("a route's cookie connects where the node's would be refused, on the resolver path and on the explicit path")
    func routeCookie() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let other = try await startNode(try nodeConfig("other@localhost", stacks: [("native", registrar.port)]), cookie: "theirs")
        defer { Task { await other.shutdown() } }
        let echo = try other.spawn(name: "echo")
        let service = Task { try await EchoService.run(echo) }
        defer { service.cancel() }
        let port = try #require(other.listening["native"]?.first?.port)

        // Without an override, this node's cookie is refused.
        let plain = try await startNode(try nodeConfig("plain@localhost", stacks: [("native", registrar.port)]), cookie: "mine")
        defer { Task { await plain.shutdown() } }
        let refused = try plain.spawn()
        let error = await #expect(throws: (any Error).self) { try await refused.send(.atom("x"), to: .name("echo", on: "other@localhost")) }
        #expect("\(error.map { "\($0)" } ?? "")".contains("cookie"), "\(String(describing: error))")

        for (index, route) in [
            #"{match: "^other@", resolver: native, cookie: {env: OTHER_COOKIE}}"#,
            #"{match: "^other@", route: {host: 127.0.0.1, port: \#(port)}, cookie: {env: OTHER_COOKIE}}"#,
        ].enumerated() {
            let config = try nodeConfig("main\(index)@localhost", stacks: [("native", registrar.port)], routes: "[\(route)]")
            let main = try await Node.start(config: config, environment: ["TEST_COOKIE": "mine", "OTHER_COOKIE": "theirs"], logger: quietLogger)
            let me = try main.spawn()
            try await me.send(.tuple([.pid(me.pid), .atom("ok")]), to: .name("echo", on: "other@localhost"))
            #expect(try await me.receive(timeout: .seconds(10)).term() == .tuple([.atom("echo"), .atom("ok")]), "\(route)")
            await main.shutdown()
        }
    }

    @Test("an atom mapping renames on the wire both ways: a local svc is svc_v2 on the peer, and its replies come back as svc")
    func atomMapping() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let routes = #"[{match: "^b@", resolver: native, atomMapping: {svc: svc_v2, hello: hello_v2}}]"#
        let a = try await startNode(try nodeConfig("a@localhost", stacks: [("native", registrar.port)], routes: routes))
        let b = try await startNode(try nodeConfig("b@localhost", stacks: [("native", registrar.port)]))
        defer { Task { await a.shutdown(); await b.shutdown() } }
        let service = try b.spawn(name: "svc_v2")
        let me = try a.spawn()
        try await me.send(.tuple([.atom("svc"), .atom("hello"), .pid(me.pid), .atom("other")]), to: .name("svc", on: "b@localhost"))
        let got = try await service.receive(timeout: .seconds(10)).term()
        #expect(got == .tuple([.atom("svc_v2"), .atom("hello_v2"), .pid(me.pid), .atom("other")]))
        try await service.send(.tuple([.atom("svc_v2"), .atom("ok")]), to: .pid(me.pid))
        #expect(try await me.receive(timeout: .seconds(10)).term() == .tuple([.atom("svc"), .atom("ok")]))
    }

    @Test("a route's log level changes its connections' log output only")
    func logLevel() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let logs = LogCapture()
        var logger = logs.logger
        logger.logLevel = .warning
        let routes = #"[{match: "^loud@", resolver: native, logLevel: debug}]"#
        let a = try await Node.start(
            config: try nodeConfig("a@localhost", stacks: [("native", registrar.port)], routes: routes), environment: ["TEST_COOKIE": "test-cookie"],
            logger: logger)
        let loud = try await startNode(try nodeConfig("loud@localhost", stacks: [("native", registrar.port)]))
        let quiet = try await startNode(try nodeConfig("quiet@localhost", stacks: [("native", registrar.port)]))
        defer { Task { await a.shutdown(); await loud.shutdown(); await quiet.shutdown() } }
        let me = try a.spawn()
        for peer: NodeName in ["loud@localhost", "quiet@localhost"] {
            let sink = try (peer == "loud@localhost" ? loud : quiet).spawn(name: "sink")
            try await me.send(.atom("hi"), to: .name("sink", on: peer))
            #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("hi"))
        }
        let debugLines = logs.all.filter { $0.hasPrefix("debug") }
        #expect(debugLines.contains { $0.contains("handshake complete") && $0.contains("loud@localhost") }, "\(logs.all)")
        #expect(!debugLines.contains { $0.contains("quiet@localhost") }, "\(debugLines)")
    }

    @Test("route flags: compression off and a smaller maximum message size, refused with the sizes named")
    func flags() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let routes = #"[{match: "^b@", resolver: native, flags: {compression: false, maxMessageSize: 4096}}]"#
        let a = try await startNode(try nodeConfig("a@localhost", stacks: [("native", registrar.port)], routes: routes))
        let b = try await startNode(try nodeConfig("b@localhost", stacks: [("native", registrar.port)]))
        defer { Task { await a.shutdown(); await b.shutdown() } }
        let sink = try b.spawn(name: "sink")
        let me = try a.spawn()
        try await me.send(.binary([UInt8](repeating: 7, count: 3000)), to: .name("sink", on: "b@localhost"))
        #expect(try await sink.receive(timeout: .seconds(10)).term() == .binary([UInt8](repeating: 7, count: 3000)))
        let connection = try #require(a.connection(to: "b@localhost"))
        #expect(!connection.negotiated.flags.contains(.compression))
        let error = try await #require(throws: MessageTooLarge.self) {
            try await me.send(.binary([UInt8](repeating: 7, count: 8000)), to: .name("sink", on: "b@localhost"))
        }
        #expect(error.description.contains("exceeds the maximum of 4096 bytes"), "\(error)")
    }
}
