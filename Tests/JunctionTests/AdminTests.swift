import Foundation
import Junction
import JunctionAdmin
import JunctionCore
import JunctionNative
import JunctionTerm
import Logging
import MetricsTestKit
import NIOHTTP1
import NIOPosix
import Prometheus
import Synchronization
import Testing

/// Two nodes on a registrar; `a` serves the admin endpoint with a Prometheus registry.
struct AdminFixture {
    let registrar: EmbeddedRegistrarServer
    let a: Node
    let b: Node
    let server: AdminServer
    let registry: PrometheusCollectorRegistry
    let client: AdminClient

    static func start(
        _ prefix: String, admin: AdminSettings = AdminSettings(port: 0), environment: [String: String] = [:], configFile: String? = nil,
        token: String? = nil
    ) async throws -> AdminFixture {
        let registrar = try await startRegistrar()
        let registry = PrometheusCollectorRegistry()
        let environment = environment.merging(["TEST_COOKIE": "admin-cookie"]) { $1 }
        let a = try await Node.start(
            config: try nodeConfig("\(prefix)_a@localhost", stacks: [("native", registrar.port)]), environment: environment,
            metrics: PrometheusMetricsFactory(registry: registry), logger: quietLogger)
        let b = try await Node.start(config: try nodeConfig("\(prefix)_b@localhost", stacks: [("native", registrar.port)]), environment: environment, logger: quietLogger)
        let server = try await AdminServer.start(
            node: a, settings: admin, environment: environment, configFile: configFile, registry: registry, group: MultiThreadedEventLoopGroup.singleton,
            logger: quietLogger)
        return AdminFixture(registrar: registrar, a: a, b: b, server: server, registry: registry, client: try AdminClient(url: server.url, token: token))
    }

    func stop() async {
        await server.shutdown()
        await a.shutdown()
        await b.shutdown()
        await registrar.shutdown()
    }

    /// `a` sends to `b`'s echo-less `sink` and waits until it arrived, so a connection is up.
    func connect() async throws -> ProcessHandle {
        let sink = try b.spawn(name: "sink")
        try await a.spawn().send(.atom("hello"), to: .name("sink", on: b.name))
        _ = try await sink.receive(timeout: .seconds(10))
        return sink
    }
}

/// The JSON of an error answer.
struct ErrorAnswer: Decodable {
    var error: String
    var status: Int
}

@Suite("Admin endpoint", .timeLimit(.minutes(1)))
struct AdminTests {
    @Test("node, connections, routes and rules as JSON; connect, disconnect, block and allow act on the node")
    func routes() async throws {
        let fixture = try await AdminFixture.start("adm1")
        let client = fixture.client
        _ = try await fixture.connect()
        let b = fixture.b.name.description

        let node = try await client.get(NodeInfo.self, .GET, "/api/node")
        #expect(node.name == fixture.a.name.description && node.stacks.map(\.name) == ["native"])
        #expect(node.stacks[0].listening.count == 1 && node.stacks[0].listening[0].hasPrefix("127.0.0.1:"), "\(node)")

        let rows = try await client.get([ConnectionStatus].self, .GET, "/api/connections")
        let row = try #require(rows.first { $0.peer == b }, "\(rows)")
        #expect(row.state == "up" && row.kind == "native" && row.direction == "outgoing" && row.stack == "native")
        #expect(row.liveLinks == row.poolSize && row.poolSize == 3, "\(row)")
        #expect(row.messagesSent >= 1 && row.bytesSent > 0 && row.idleSeconds != nil, "\(row)")

        let explained = try await client.get(RouteExplanation.self, .GET, "/api/routes?node=\(b)")
        #expect(explained.routes == ["1. no static route matches: default resolver (stack native)"], "\(explained)")
        #expect(explained.resolved == nil)
        let resolved = try await client.get(RouteExplanation.self, .GET, "/api/routes?node=\(b)&resolve=true")
        #expect(resolved.resolved?.first?.contains("answered localhost:") == true, "\(resolved)")

        // Blocking the system closes its connection; allowing it lets a send connect again.
        var status = fixture.a.networkStatus().makeAsyncIterator()
        _ = await status.next()  // the snapshot
        let blocked = try await client.get(RulesInfo.self, .POST, "/api/block", json: ["system": b])
        #expect(blocked.blockedSystems == [b])
        while let update = await status.next() {
            if case .event(.connectionClosed(let peer)) = update, peer.node == b { break }
        }
        #expect(try await client.get([ConnectionStatus].self, .GET, "/api/connections").isEmpty)
        let allowed = try await client.get(RulesInfo.self, .POST, "/api/allow", json: ["system": b])
        #expect(allowed.blockedSystems.isEmpty && allowed.allowedSystems == [b], "\(allowed)")
        #expect(try await client.get(RulesInfo.self, .GET, "/api/rules").allowedSystems == [b])

        _ = try await client.get([String: String].self, .POST, "/api/disconnect", json: ["node": b])
        let refused = await #expect(throws: (any Error).self) { try await fixture.a.spawn().send(.atom("x"), to: .name("sink", on: fixture.b.name)) }
        #expect("\(refused!)".contains("disconnectSystem"), "\(refused!)")
        let connected = try await client.get([ConnectionStatus].self, .POST, "/api/connect", json: ["node": b])
        #expect(connected.map(\.state) == ["up"], "\(connected)")
        await fixture.stop()
    }

    @Test("errors are JSON with their status code and say what to do")
    func errors() async throws {
        let fixture = try await AdminFixture.start("adm2")
        let client = fixture.client
        let cases: [(HTTPMethod, String, [String: String]?, Int, String)] = [
            (.GET, "/api/nothing", nil, 404, "no such path: /api/nothing"),
            (.DELETE, "/api/node", nil, 405, "use GET"),
            (.GET, "/api/reload", nil, 405, "use POST"),
            (.POST, "/api/connect", nil, 400, "needs a JSON body"),
            (.POST, "/api/connect", ["name": "x@y"], 400, "'node' (name@host) is required"),
            (.POST, "/api/connect", ["node": "no-at-sign"], 400, "is not a node name"),
            (.POST, "/api/block", ["ip": "10.0.0.300"], 400, "is not an IPv4 or IPv6 address"),
            (.POST, "/api/block", ["ip": "10.0.0.1", "system": "x@y"], 400, "exactly one of 'ip', 'net' or 'system'"),
            (.POST, "/api/allow", ["host": "x"], 400, "unknown field 'host'"),
            (.POST, "/api/connect", ["node": "nobody@localhost"], 502, "cannot connect to nobody@localhost"),
            (.POST, "/api/reload", nil, 409, "start it with --config FILE"),
        ]
        for (method, path, body, status, message) in cases {
            let (code, bytes) = try await client.call(method, path, json: body)
            let answer = try JSONDecoder().decode(ErrorAnswer.self, from: Data(bytes))
            #expect(code == status && answer.status == status, "\(method) \(path): \(code) \(answer)")
            #expect(answer.error.contains(message), "\(method) \(path): \(answer.error)")
        }
        // Not JSON at all.
        let (code, _) = try await client.call(.POST, "/api/block", json: nil)
        #expect(code == 400)
        await fixture.stop()
    }

    @Test("with a token, every request needs it; an admin address off loopback without one is refused at load")
    func token() async throws {
        let fixture = try await AdminFixture.start(
            "adm3", admin: AdminSettings(port: 0, token: CookieSource(env: "ADMIN_TOKEN")), environment: ["ADMIN_TOKEN": "s3cret-token"], token: "s3cret-token")
        #expect(try await fixture.client.get(NodeInfo.self, .GET, "/api/node").name == fixture.a.name.description)
        for token in [nil, "wrong", "s3cret-token-and-more"] {
            let client = try AdminClient(url: fixture.server.url, token: token)
            let (code, bytes) = try await client.call(.GET, "/api/connections")
            #expect(code == 401, "token \(token ?? "none")")
            #expect(String(decoding: bytes, as: UTF8.self).contains("Authorization: Bearer TOKEN"))
        }
        await fixture.stop()

        let error = try #require(throws: ConfigError.self) {
            try ConfigLoader.load(yaml: """
                node: {name: x@localhost, cookie: {env: C}}
                stacks: [{name: native, kind: native}]
                admin: {host: 0.0.0.0, port: 9464}
                """)
        }
        #expect(error.keyPath == "admin.token" && error.message.contains("not loopback, so it needs a bearer token"), "\(error)")
    }

    @Test("reload: a new route and new access rules take effect; an invalid file is refused and the running config stays")
    func reload() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("junction-reload-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("node.yaml")
        let fixture = try await AdminFixture.start("adm4", configFile: file.path)
        let client = fixture.client
        let base = """
            node: {name: adm4_a@localhost, cookie: {env: TEST_COOKIE}}
            stacks: [{name: native, kind: native, registrar: {port: \(fixture.registrar.port)}}]
            """
        try (base + """

            routes:
              - {match: "^far@", route: {host: 127.0.0.1, port: 1}, weight: 5}
            access:
              - {blockIpNet: 10.9.0.0/16}
            """).write(to: file, atomically: true, encoding: .utf8)
        let result = try await client.get(ReloadResult.self, .POST, "/api/reload")
        #expect(result.routes == 1 && result.ipRules == 1 && result.needsRestart.isEmpty, "\(result)")
        let explained = try await client.get(RouteExplanation.self, .GET, "/api/routes?node=far@there")
        #expect(explained.routes.first == "1. '^far@' weight 5: explicit 127.0.0.1:1", "\(explained)")
        #expect(try await client.get(RulesInfo.self, .GET, "/api/rules").ipRules == ["block net 10.9.0.0/16"])
        let sendError = await #expect(throws: (any Error).self) { try await fixture.a.spawn().send(.atom("x"), to: .name("p", on: try NodeName("far@there"))) }
        #expect("\(sendError!)".contains("route '^far@'"), "the new route is the one tried: \(sendError!)")

        try (base + "\nroutes:\n  - {match: \"^far@\", reslover: native}\n").write(to: file, atomically: true, encoding: .utf8)
        let (code, bytes) = try await client.call(.POST, "/api/reload")
        let answer = try JSONDecoder().decode(ErrorAnswer.self, from: Data(bytes))
        #expect(code == 422 && answer.error.contains("routes[0]") && answer.error.contains("reslover"), "\(answer)")
        #expect(try await client.get([RouteInfo].self, .GET, "/api/routes").map(\.match) == ["^far@"], "the old routes stay")
        #expect(try await client.get(RulesInfo.self, .GET, "/api/rules").ipRules == ["block net 10.9.0.0/16"])
        await fixture.stop()
    }

    @Test("/metrics moves with traffic: frames and bytes per peer, handshakes, route lookups, connections")
    func prometheus() async throws {
        let fixture = try await AdminFixture.start("adm5")
        let sink = try await fixture.connect()
        for index in 0..<99 { try await fixture.a.spawn().send(.int(index), to: .name("sink", on: fixture.b.name)) }
        for _ in 0..<99 { _ = try await sink.receive(timeout: .seconds(10)) }
        let (code, bytes) = try await fixture.client.call(.GET, "/metrics")
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(code == 200)
        let peer = "peer=\"\(fixture.b.name)\""
        let frames = try #require(Self.value(in: text, metric: "junction_frames_sent_total", containing: peer), "\(text)")
        #expect(frames >= 100, "100 messages went to b: \(frames)")
        #expect((Self.value(in: text, metric: "junction_bytes_sent_total", containing: peer) ?? 0) > 100)
        #expect(Self.value(in: text, metric: "junction_handshakes_total", containing: "result=\"ok\"") == 1, "\(text)")
        #expect(Self.value(in: text, metric: "junction_route_lookups_total", containing: "result=\"default\"") == 1)
        #expect(Self.value(in: text, metric: "junction_connections", containing: "state=\"up\"") == 1)
        #expect(text.contains("junction_resolve_duration_seconds"), "\(text)")
        await fixture.stop()
    }

    /// The value of the first sample of `metric` whose labels contain `label`.
    static func value(in text: String, metric: String, containing label: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(metric + "{") && line.contains(label) {
            return Double(line.split(separator: " ").last ?? "")
        }
        return nil
    }

    @Test("the status page is served and reads the JSON API")
    func statusPage() async throws {
        let fixture = try await AdminFixture.start("adm6")
        let (code, bytes) = try await fixture.client.call(.GET, "/")
        let page = String(decoding: bytes, as: UTF8.self)
        #expect(code == 200 && page.contains("<table>") && page.contains("/api/connections") && page.contains("setInterval(refresh"))
        await fixture.stop()
    }
}

@Suite("Node metrics (MetricsTestKit)")
struct NodeMetricsTests {
    @Test("a refused handshake counts by reason; traffic counters grow by what moved")
    func counters() async throws {
        let registrar = try await startRegistrar()
        let metrics = TestMetrics()
        let a = try await Node.start(
            config: try nodeConfig("met_a@localhost", stacks: [("native", registrar.port)]), environment: ["TEST_COOKIE": "one"], metrics: metrics,
            logger: quietLogger)
        let b = try await Node.start(config: try nodeConfig("met_b@localhost", stacks: [("native", registrar.port)]), environment: ["TEST_COOKIE": "two"], logger: quietLogger)
        await #expect(throws: (any Error).self) { try await a.spawn().send(.atom("x"), to: .name("p", on: b.name)) }
        let failed = try metrics.expectCounter("junction_handshakes_total", [("stack", "native"), ("result", "failed"), ("reason", "badCookie")])
        #expect(failed.totalValue == 1)
        let c = try await Node.start(config: try nodeConfig("met_c@localhost", stacks: [("native", registrar.port)]), environment: ["TEST_COOKIE": "one"], logger: quietLogger)
        let sink = try c.spawn(name: "sink")
        for index in 0..<10 { try await a.spawn().send(.int(index), to: .name("sink", on: c.name)) }
        for _ in 0..<10 { _ = try await sink.receive(timeout: .seconds(10)) }
        a.updateMetrics()
        let frames = try metrics.expectCounter("junction_frames_sent_total", [("stack", "native"), ("peer", "met_c@localhost")])
        #expect(frames.totalValue >= 10)
        await a.shutdown()
        await b.shutdown()
        await c.shutdown()
        await registrar.shutdown()
    }
}

@Suite("JSON log lines")
struct JSONLogTests {
    @Test("one JSON object per line with level, message and metadata")
    func line() throws {
        let lines = Mutex<[String]>([])
        var logger = Logger(label: "junction") { JSONLogHandler(label: $0) { line in lines.withLock { $0.append(line) } } }
        logger[metadataKey: "junction.node"] = "a@h"
        logger.notice("connected", metadata: ["junction.peer": "b@h"])
        let line = try #require(lines.withLock { $0.first })
        #expect(line.hasSuffix("}\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object["level"] == "notice" && object["message"] == "connected" && object["label"] == "junction")
        #expect(object["junction.node"] == "a@h" && object["junction.peer"] == "b@h" && object["time"]?.hasPrefix("20") == true)
    }
}

@Suite("What logs never say")
struct LogSecrecyTests {
    @Test("at trace level, neither cookies nor message contents appear in any log line, also when a handshake fails")
    func noSecrets() async throws {
        let registrar = try await startRegistrar()
        let capture = LogCapture()
        var logger = capture.logger
        logger.logLevel = .trace
        let cookie = "cookie-SECRET-4711"
        let a = try await Node.start(config: try nodeConfig("sec_a@localhost", stacks: [("native", registrar.port)]), environment: ["TEST_COOKIE": cookie], logger: logger)
        let b = try await Node.start(config: try nodeConfig("sec_b@localhost", stacks: [("native", registrar.port)]), environment: ["TEST_COOKIE": cookie], logger: logger)
        let c = try await Node.start(
            config: try nodeConfig("sec_c@localhost", stacks: [("native", registrar.port)]), environment: ["TEST_COOKIE": "other-SECRET-0815"], logger: logger)
        let sink = try b.spawn(name: "sink")
        try await a.spawn().send(.tuple([.atom("payload_SECRET_1234"), .binary(Array("body-SECRET-99".utf8))]), to: .name("sink", on: b.name))
        _ = try await sink.receive(timeout: .seconds(10))
        await #expect(throws: (any Error).self) { try await c.spawn().send(.atom("payload_SECRET_1234"), to: .name("sink", on: b.name)) }
        await capture.waitFor("handshake failed")
        for secret in [cookie, "other-SECRET-0815", "payload_SECRET_1234", "body-SECRET-99", "SECRET"] {
            #expect(!capture.contains(secret), "\(capture.all.filter { $0.contains(secret) })")
        }
        #expect(capture.all.count > 10, "trace logging was on: \(capture.all.count) lines")
        await a.shutdown()
        await b.shutdown()
        await c.shutdown()
        await registrar.shutdown()
    }
}
