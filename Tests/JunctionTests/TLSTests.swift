import Foundation
@testable import Junction
import JunctionCore
import JunctionErlang
import NIOPosix
import JunctionNative
import JunctionTransport
import JunctionTerm
import Logging
import NIOCore
import NIOSSL
import Testing

/// Native links over TLS with the fixture certificates in Fixtures/tls (see its README).
@Suite("TLS", .timeLimit(.minutes(1)))
struct TLSTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/tls")

    static func file(_ name: String) -> String { fixtures.appendingPathComponent(name).path }

    /// A native stack with TLS presenting `certificate` (a fixture name, or a path with
    /// `directory`), trusting the fixture CA.
    func tlsNode(_ name: NodeName, certificate: String, registrarPort: Int, routes: String = "[]", logger: Logger = quietLogger, directory: URL? = nil)
        async throws -> Node
    {
        let base = directory ?? Self.fixtures
        let tls =
            "tls: {certificate: \(base.appendingPathComponent("\(certificate).pem").path), key: \(base.appendingPathComponent("\(certificate).key").path), trust: \(Self.file("ca.pem")), reloadCheck: 0s}"
        let config = try nodeConfig(name.description, stacks: [("native", registrarPort)], routes: routes, stackExtra: tls)
        return try await Node.start(config: config, environment: ["TEST_COOKIE": "test-cookie"], logger: logger)
    }

    /// The certificate the far end of `node`'s connection to `peer` presented.
    func peerCertificate(_ node: Node, _ peer: NodeName) async throws -> NIOSSLCertificate? {
        let connection = try #require(node.connection(to: peer))
        let channel = try #require(connection.channels.first)
        return try await channel.pipeline.handler(type: NIOSSLHandler.self).flatMap { handler in
            channel.eventLoop.makeSucceededFuture(handler.peerCertificate)
        }.get()
    }

    @Test("mutual TLS: messages flow over a pool whose every link is TLS, each side seeing the other's certificate")
    func mutualTLS() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let a = try await tlsNode("a@localhost", certificate: "node-a", registrarPort: registrar.port)
        let b = try await tlsNode("b@localhost", certificate: "node-b", registrarPort: registrar.port)
        defer { Task { await a.shutdown(); await b.shutdown() } }
        let echo = try b.spawn(name: "echo")
        let service = Task { try await EchoService.run(echo) }
        defer { service.cancel() }
        // The dial returns once every extra link has joined.
        _ = try await a.connect("b@localhost")
        let me = try a.spawn()
        try await me.send(.tuple([.pid(me.pid), .atom("over_tls")]), to: .name("echo", on: "b@localhost"))
        #expect(try await me.receive(timeout: .seconds(10)).term() == .tuple([.atom("echo"), .atom("over_tls")]))

        let connection = try #require(a.connection(to: "b@localhost"))
        #expect(connection.info.liveLinks == 3 && connection.channels.count == 3)
        for channel in connection.channels {
            _ = try await channel.pipeline.handler(type: NIOSSLHandler.self).get()
        }
        #expect(try await peerCertificate(a, "b@localhost") == (try NIOSSLCertificate.fromPEMFile(Self.file("node-b.pem")).first))
        #expect(try await peerCertificate(b, "a@localhost") == (try NIOSSLCertificate.fromPEMFile(Self.file("node-a.pem")).first))
    }

    @Test("a certificate from an untrusted authority is refused with a clear error, in both directions, and the node goes on")
    func untrusted() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let logs = LogCapture()
        let b = try await tlsNode("b@localhost", certificate: "node-b", registrarPort: registrar.port, logger: logs.logger)
        let rogue = try await tlsNode("rogue@localhost", certificate: "rogue", registrarPort: registrar.port)
        defer { Task { await b.shutdown(); await rogue.shutdown() } }
        _ = try b.spawn(name: "sink")
        _ = try rogue.spawn(name: "sink")

        let intruder = try rogue.spawn()
        let refused = await #expect(throws: (any Error).self) { try await intruder.send(.atom("x"), to: .name("sink", on: "b@localhost")) }
        #expect("\(refused.map { "\($0)" } ?? "")".contains("TLS handshake failed"), "\(String(describing: refused))")
        #expect(logs.contains("TLS handshake failed"), "\(logs.all)")

        let careful = try b.spawn()
        let untrusted = await #expect(throws: (any Error).self) { try await careful.send(.atom("x"), to: .name("sink", on: "rogue@localhost")) }
        #expect("\(untrusted.map { "\($0)" } ?? "")".contains("certificate is not trusted"), "\(String(describing: untrusted))")
        #expect(b.connection(to: "rogue@localhost") == nil)

        let a = try await tlsNode("a@localhost", certificate: "node-a", registrarPort: registrar.port)
        defer { Task { await a.shutdown() } }
        let sink = try b.spawn(name: "after")
        try await a.spawn().send(.atom("still_serving"), to: .name("after", on: "b@localhost"))
        #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("still_serving"))
    }

    @Test("TLS files that do not load stop the node at start with the file and the problem named")
    func badFiles() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        for (certificate, key, expected) in [
            ("/nonexistent/node.pem", Self.file("node-a.key"), "cannot read the certificate file /nonexistent/node.pem"),
            (Self.file("node-a.pem"), Self.file("node-b.key"), "do not make a TLS identity"),
            (Self.file("node-a.pem"), Self.file("ca.pem"), "cannot read the private key"),
        ] {
            let tls = "tls: {certificate: \(certificate), key: \(key), trust: \(Self.file("ca.pem"))}"
            let config = try nodeConfig("bad@localhost", stacks: [("native", registrar.port)], stackExtra: tls)
            let error = await #expect(throws: TLSError.self) { try await startNode(config) }
            #expect(error?.description.contains(expected) == true, "\(String(describing: error))")
        }
    }

    @Test("a route's certificate is the one presented when dialling")
    func routeCertificate() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let b = try await tlsNode("b@localhost", certificate: "node-b", registrarPort: registrar.port)
        let routes = "[{match: \"^b@\", resolver: native, certificate: {certificate: \(Self.file("rogue.pem")), key: \(Self.file("rogue.key"))}}]"
        let a = try await tlsNode("a@localhost", certificate: "node-a", registrarPort: registrar.port, routes: routes)
        defer { Task { await a.shutdown(); await b.shutdown() } }
        _ = try b.spawn(name: "sink")
        let me = try a.spawn()
        let error = await #expect(throws: (any Error).self) { try await me.send(.atom("x"), to: .name("sink", on: "b@localhost")) }
        #expect("\(error.map { "\($0)" } ?? "")".contains("refused this node's certificate"), "\(String(describing: error))")
    }

    @Test("a renewed certificate on disk is presented to new connections; a connection made before goes on")
    func reload() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("junction-tls-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func install(_ fixture: String) throws {
            for suffix in ["key", "pem"] {
                let target = directory.appendingPathComponent("b.\(suffix)")
                try? FileManager.default.removeItem(at: target)
                try FileManager.default.copyItem(at: Self.fixtures.appendingPathComponent("\(fixture).\(suffix)"), to: target)
            }
        }
        try install("node-b")
        let b = try await tlsNode("b@localhost", certificate: "b", registrarPort: registrar.port, directory: directory)
        let a = try await tlsNode("a@localhost", certificate: "node-a", registrarPort: registrar.port)
        let c = try await tlsNode("c@localhost", certificate: "node-a", registrarPort: registrar.port)
        defer { Task { await a.shutdown(); await b.shutdown(); await c.shutdown() } }
        let sink = try b.spawn(name: "sink")
        let early = try a.spawn()
        try await early.send(.atom("before"), to: .name("sink", on: "b@localhost"))
        #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("before"))
        #expect(try await peerCertificate(a, "b@localhost") == (try NIOSSLCertificate.fromPEMFile(Self.file("node-b.pem")).first))

        try install("node-b2")
        let late = try c.spawn()
        try await late.send(.atom("renewed"), to: .name("sink", on: "b@localhost"))
        #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("renewed"))
        #expect(try await peerCertificate(c, "b@localhost") == (try NIOSSLCertificate.fromPEMFile(Self.file("node-b2.pem")).first))

        try await early.send(.atom("still_here"), to: .name("sink", on: "b@localhost"))
        #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("still_here"))
        #expect(try await peerCertificate(a, "b@localhost") == (try NIOSSLCertificate.fromPEMFile(Self.file("node-b.pem")).first))
    }
}

/// OTP's TLS distribution (`-proto_dist inet_tls`) against an `erlang` stack with `tls`.
@Suite("TLS distribution", .timeLimit(.minutes(1)))
struct ErlangTLSTests {
    @Test("an OTP node on TLS distribution and Junction's Erlang stack with tls reach each other both ways; a plain OTP node cannot get in")
    func tlsDistribution() async throws {
        let registrar = try await startRegistrar()
        let epmd = try await EpmdServer.start(port: 0, group: MultiThreadedEventLoopGroup.singleton, logger: quietLogger)
        let epmdPort = epmd.address!.port!
        defer { Task { await registrar.shutdown(); await epmd.shutdown() } }
        let config = try ConfigLoader.load(yaml: """
            node: {name: jt@localhost, cookie: {env: TEST_COOKIE}}
            stacks:
              - {name: native, kind: native, registrar: {host: 127.0.0.1, port: \(registrar.port)}}
              - name: otp
                kind: erlang
                acceptors: [{host: 127.0.0.1, port: 0}]
                erlang: {epmdPort: \(epmdPort)}
                tls: {certificate: \(TLSTests.file("node-b.pem")), key: \(TLSTests.file("node-b.key")), trust: \(TLSTests.file("ca.pem"))}
            routes:
              - {match: "^e[0-9a-z_]*@localhost$", resolver: otp, cookie: {env: ERLANG_COOKIE}}
            """)
        let node = try await Node.start(config: config, environment: ["TEST_COOKIE": "test-cookie", "ERLANG_COOKIE": "erlcookie"], logger: quietLogger)
        defer { Task { await node.shutdown() } }
        let echo = try node.spawn(name: "echo")
        let service = Task { try await EchoService.run(echo) }
        defer { service.cancel() }

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("junction-tlsdist-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let options = directory.appendingPathComponent("ssl_dist.conf")
        let side = """
            {certfile, "\(TLSTests.file("node-a.pem"))"}, {keyfile, "\(TLSTests.file("node-a.key"))"}, {cacertfile, "\(TLSTests.file("ca.pem"))"}, {verify, verify_peer}
            """
        try """
            [{server, [\(side), {fail_if_no_peer_cert, true}]}, {client, [\(side), {server_name_indication, disable}]}].
            """.write(to: options, atomically: true, encoding: .utf8)
        let tlsDist = ["-proto_dist", "inet_tls", "-ssl_dist_optfile", options.path]

        let printed = try await Erl.run("etls@localhost", cookie: "erlcookie", epmdPort: epmdPort, extra: tlsDist, """
            J = 'jt@localhost',
            Ping = net_adm:ping(J),
            Call = gen_server:call({echo, J}, hello),
            io:format("ping=~w call=~w~n", [Ping, Call])
            """)
        #expect(printed.contains("ping=pong call={echo,hello}"), "\(printed)")

        let served = try Erl.node("etls2@localhost", cookie: "erlcookie", epmdPort: epmdPort, then: """
            register(echo, spawn(fun Loop() -> receive {From, Msg} -> From ! {echo, Msg}, Loop() end end)),
            io:format("serving~n"),
            receive after infinity -> ok end
            """, extra: tlsDist)
        defer { served.signal(SIGKILL) }
        try await served.waitForLine(containing: "serving")
        let me = try node.spawn()
        try await me.send(.tuple([.pid(me.pid), .atom("hi")]), to: .name("echo", on: "etls2@localhost"))
        #expect(try await me.receive(timeout: .seconds(10)).term() == .tuple([.atom("echo"), .atom("hi")]))

        let plain = try await Erl.run("eplain@localhost", cookie: "erlcookie", epmdPort: epmdPort, """
            io:format("ping=~w~n", [net_adm:ping('jt@localhost')])
            """)
        #expect(plain.contains("ping=pang"), "\(plain)")
    }
}
