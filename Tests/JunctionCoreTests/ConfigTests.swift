import Foundation
import Testing

@testable import JunctionCore

let validConfig = """
    node:
      name: gw@localhost
      cookie: {env: COOKIE}
    stacks:
      - name: native
        kind: native
        acceptors: [{host: 127.0.0.1, port: 0}]
        registrar: {port: 4499}
        writeCoalescing: 20us
      - name: cluster-b
        kind: native
        registrar: {port: 4500}
    routes:
      - match: "^b"
        weight: 10
        resolver: cluster-b
        flags: {remoteSpawn: false}
        atomMapping: {svc: svc_v2}
        logLevel: debug
      - match: "^fixed@"
        route: {host: 127.0.0.1, port: 9000}
    bridges:
      - {name: svc, node: n1@localhost, process: echo}
      - {name: other, node: n2@localhost}
    """

/// The valid file with one edit.
func edited(_ old: String, _ new: String) -> String {
    validConfig.replacingOccurrences(of: old, with: new)
}

@Suite("Configuration")
struct ConfigTests {
    @Test("a valid file decodes with defaults filled in")
    func valid() throws {
        let config = try ConfigLoader.load(yaml: validConfig)
        #expect(config.node.name == "gw@localhost")
        #expect(config.bridges == [BridgeSettings(name: "svc", node: "n1@localhost", process: "echo"), BridgeSettings(name: "other", node: "n2@localhost", process: "other")])
        #expect(config.defaultStack.name == "native")
        #expect(config.stacks[1].acceptors == [AcceptorSettings(host: "127.0.0.1", port: 0)])
        #expect(config.stacks[0].handshakeTimeout == .seconds(5))
        #expect(config.stacks[0].writeCoalescing == .microseconds(20) && config.stacks[1].writeCoalescing == .microseconds(50))
        #expect(config.node.busyPoll == .microseconds(100))
        #expect(try ConfigLoader.load(yaml: edited("cookie: {env: COOKIE}", "cookie: {env: COOKIE}\n  busyPoll: 0us")).node.busyPoll == .microseconds(0))
        let table = try config.routeTable(environment: [:])
        let route = try #require(table.route(for: "bob@localhost").first)
        #expect(route.route.resolver == "cluster-b" && route.route.atomMapping == ["svc": "svc_v2"] && route.route.logLevel == .debug)
        #expect(route.route.overrideSummary == ["remote spawn off", "atoms svc->svc_v2", "log debug"])
        #expect(table.route(for: "fixed@h").first?.route.explicit?.port == 9000)
    }

    @Test("every file in Config/ is valid; bridge.yaml bridges both ways")
    func shippedConfigs() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Config")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".yaml") }
        #expect(files.contains("bridge.yaml"))
        for file in files { _ = try ConfigLoader.load(file: directory.appendingPathComponent(file).path) }
        let bridge = try ConfigLoader.load(file: directory.appendingPathComponent("bridge.yaml").path)
        #expect(bridge.bridges.map(\.node) == ["n1@localhost", "e1@localhost"])
        #expect(try bridge.routeTable(environment: [:]).route(for: "e1@localhost").first?.route.resolver == "erlang")
    }

    @Test("the embedded default configuration is valid")
    func embeddedDefault() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Config/junction.yaml").path
        let config = try ConfigLoader.load(file: path)
        #expect(config.stacks.map(\.kind) == [.native, .erlang])
        #expect(config.stacks.allSatisfy { $0.acceptors.allSatisfy { $0.host == "127.0.0.1" } })
        #expect(config.stacks[1].erlang == ErlangSettings())
        let table = try config.routeTable(environment: [:])
        #expect(table.route(for: "erl_a@localhost").first?.route.resolver == "erlang")
    }

    /// (file, key path, part of the message) for each kind of mistake.
    static let badFiles: [(String, String, String)] = [
        (edited("routes:", "extra: 1\nroutes:"), "extra", "unknown key"),
        (edited("remoteSpawn: false", "remoteSpawn: true"), "routes[0].flags.remoteSpawn", "do not run processes spawned by peers"),
        (edited("writeCoalescing: 20us", "tls: {certificate: a.pem, key: a.key}"), "stacks[0].tls.trust", "required key is missing"),
        (edited("logLevel: debug", "certificate: {certificate: a.pem}"), "routes[0].certificate.key", "required key is missing"),
        (edited("{svc: svc_v2}", "{svc: svc_v2, web: svc_v2}"), "routes[0].atomMapping", "both map to 'svc_v2'"),
        (edited("name: svc, node: n1@localhost", "name: svc, node: gw@localhost"), "bridges[0].node", "not to this one"),
        (edited("name: other", "name: svc"), "bridges[1].name", "used twice"),
        (edited("process: echo", "process: \"\""), "bridges[0].process", "1 to 255 bytes"),
        (edited("node: n2@localhost", "node: n2"), "bridges[1].node", "no '@'"),
        (edited("port: 0}", "port: x}"), "stacks[0].acceptors[0].port", "expected an integer"),
        (edited("port: 0}", "port: 70000}"), "stacks[0].acceptors[0].port", "outside 0...65535"),
        (edited("weight: 10", "weigth: 10"), "routes[0].weigth", "allowed here: match, weight"),
        (edited("\"^b\"", "\"(b\""), "routes[0].match", "not a valid regular expression"),
        (edited("resolver: cluster-b", "resolver: nowhere"), "routes[0].resolver", "no stack is named 'nowhere'"),
        (edited("  name: gw@localhost\n", ""), "node.name", "required key is missing"),
        (edited("gw@localhost", "gw"), "node.name", "there is no '@'"),
        (edited("kind: native\n    acceptors", "kind: quantum\n    acceptors"), "stacks[0].kind", "unknown stack kind 'quantum'"),
        (edited("registrar: {port: 4500}", "handshakeTimeout: 5 sec"), "stacks[1].handshakeTimeout", "not a duration"),
        (edited("route: {host: 127.0.0.1, port: 9000}", "weight: 1"), "routes[1]", "needs 'resolver'"),
        (edited("- name: cluster-b", "- name: native"), "stacks[1]", "used twice"),
        (edited("writeCoalescing: 20us", "writeCoalescing: 20ms"), "stacks[0].writeCoalescing", "must be at most 10ms"),
        (edited("cookie: {env: COOKIE}", "cookie: {env: COOKIE}\n  busyPoll: 1s"), "node.busyPoll", "0 turns polling off"),
        (edited("writeCoalescing: 20us", "writeCoalescing: 20"), "stacks[0].writeCoalescing", "50us, 250ms"),
        (edited("registrar: {port: 4500}", "erlang: {epmdPort: 4369}"), "stacks[1].erlang", "only a stack of kind 'erlang'"),
        (edited("writeCoalescing: 20us", "silenceTimeout: 500ms"), "stacks[0].silenceTimeout", "at least 1s"),
        (edited("kind: native\n    registrar: {port: 4500}", "kind: erlang\n    silenceTimeout: 5s"), "stacks[1].silenceTimeout", "erlang.netTickTime"),
        (edited("kind: native\n    registrar: {port: 4500}", "kind: erlang\n    erlang: {netTickTime: 10ms}"), "stacks[1].erlang.netTickTime", "at least 1s"),
        (edited("logLevel: debug", "logLevel: loud"), "routes[0].logLevel", "unknown log level 'loud'"),
        (edited("registrar: {port: 4500}", "registrar: {kind: etcd}"), "stacks[1].registrar.etcd", "needs 'etcd' with at least 'endpoints' and 'cluster'"),
        (edited("registrar: {port: 4500}", "registrar: {kind: etcd, port: 1, etcd: {endpoints: [http://e:2379], cluster: c}}"), "stacks[1].registrar.port", "its addresses are etcd.endpoints"),
        (edited("registrar: {port: 4500}", "registrar: {etcd: {endpoints: [http://e:2379], cluster: c}}"), "stacks[1].registrar.etcd", "needs kind: etcd"),
        (edited("registrar: {port: 4500}", "registrar: {kind: etcd, etcd: {endpoints: [e:2379], cluster: c}}"), "stacks[1].registrar.etcd.endpoints[0]", "not an endpoint like http://"),
        (edited("registrar: {port: 4500}", "registrar: {kind: etcd, etcd: {endpoints: [], cluster: c}}"), "stacks[1].registrar.etcd.endpoints", "at least one endpoint"),
        (edited("registrar: {port: 4500}", "registrar: {kind: etcd, etcd: {endpoints: [https://e:2379], cluster: c}}"), "stacks[1].registrar.etcd.trust", "https endpoints need 'trust'"),
        (edited("registrar: {port: 4500}", "registrar: {kind: etcd, etcd: {endpoints: [http://e:2379], cluster: a/b}}"), "stacks[1].registrar.etcd.cluster", "without '/'"),
        (edited("registrar: {port: 4500}", "registrar: {kind: etcd, etcd: {endpoints: [http://e:2379], cluster: c, leaseTTL: 1s}}"), "stacks[1].registrar.etcd.leaseTTL", "at least 2s"),
        (edited("registrar: {port: 4500}", "registrar: {kind: etcd, etcd: {endpoints: [http://e:2379], cluster: c, requestTimeout: 30s}}"), "stacks[1].registrar.etcd.requestTimeout", "between 10ms and the lease TTL"),
        (edited("registrar: {port: 4500}", "registrar: {kind: etcd, etcd: {endpoints: [http://e:2379], cluster: c, ttl: 5s}}"), "stacks[1].registrar.etcd.ttl", "unknown key"),
    ]

    @Test("bad files are refused with the key path and what was expected", arguments: badFiles)
    func errors(yaml: String, keyPath: String, message: String) throws {
        let error = try #require(throws: ConfigError.self) { try ConfigLoader.load(yaml: yaml) }
        #expect(error.keyPath == keyPath, "\(error)")
        #expect(error.message.contains(message), "\(error)")
    }

    @Test("YAML syntax errors are reported, not trapped on")
    func syntax() throws {
        let error = try #require(throws: ConfigError.self) { try ConfigLoader.load(yaml: "node: [unclosed", file: "bad.yaml") }
        #expect(error.description.hasPrefix("bad.yaml: "))
    }

    @Test("the cookie comes from the environment first, then the file; a missing one is a clear error")
    func cookies() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("junction-cookie-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("cookie").path
        let source = CookieSource(env: "MY_COOKIE", file: file)
        #expect(try source.read(environment: ["MY_COOKIE": "from-env"], createIfMissing: false) == Secret("from-env"))
        let missing = try #require(throws: ConfigError.self) { try source.read(environment: [:], createIfMissing: false) }
        #expect(missing.description.contains("does not exist and MY_COOKIE is not set"))
        let created = try source.read(environment: [:], createIfMissing: true)
        #expect(created.value.count == 20)
        #expect(try source.read(environment: [:], createIfMissing: false) == created)
        #expect("\(created)" == "<secret>")
    }
}
