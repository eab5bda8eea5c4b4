import Foundation
import Junction
import JunctionCore
import JunctionLoad
import JunctionTerm
import MetricsTestKit
import Testing

@testable import JunctionNative

/// The etcd registrar against real etcd: one member for the plain cases, three for the
/// failures.
@Suite("etcd registrar", .serialized, .timeLimit(.minutes(2)))
struct EtcdRegistrarTests {
    let environment = ["TEST_COOKIE": "etcd-cookie"]

    @Test("three nodes register, resolve each other through etcd and exchange messages; a duplicate name is refused")
    func threeNodes() async throws {
        try await EtcdCluster.with(members: 1) { etcd in
            let cluster = "c\(UInt32.random(in: 0...UInt32.max))"
            var nodes: [Node] = []
            for name in ["ea@localhost", "eb@localhost", "ec@localhost"] {
                nodes.append(try await Node.start(config: try etcd.nodeConfig(name, cluster: cluster), environment: environment, logger: quietLogger))
            }
            for (index, node) in nodes.enumerated() {
                let sink = try node.spawn(name: "sink")
                for other in nodes where other !== node { try await other.spawn().send(.int(index), to: .name("sink", on: node.name)) }
                for _ in 0..<2 { #expect(try await sink.receive(timeout: .seconds(10)).term() == .int(index)) }
            }
            let candidates = await nodes[0].resolveCandidates(for: nodes[1].name)
            #expect(candidates.first?.contains("etcd cluster '\(cluster)'") == true && candidates.first?.contains("answered 127.0.0.1:") == true, "\(candidates)")

            let error = await #expect(throws: (any Error).self) {
                _ = try await Node.start(config: try etcd.nodeConfig("eb@localhost", cluster: cluster), environment: environment, logger: quietLogger)
            }
            #expect("\(error!)".contains("'eb@localhost' is already registered in etcd cluster '\(cluster)' (\(etcd.endpoints[0])) by the node at 127.0.0.1:"), "\(error!)")
            #expect("\(error!)".contains("names are unique in a cluster"))
            for node in nodes { await node.shutdown() }
        }
    }

    @Test("a node started while etcd answers nothing keeps trying, logging each attempt, and registers once etcd answers; with no etcd at all it gives up after the lease TTL")
    func unanswered() async throws {
        try await EtcdCluster.with(members: 1) { etcd in
            let cluster = "c\(UInt32.random(in: 0...UInt32.max))"
            let capture = LogCapture()
            etcd.pause(0)
            let starting = Task {
                try await Node.start(
                    config: try etcd.nodeConfig("eu@localhost", cluster: cluster, requestTimeout: "300ms"), environment: environment, logger: capture.logger)
            }
            await capture.waitFor("etcd did not answer the lease grant (attempt 2)")
            etcd.resume(0)
            let node = try await starting.value
            let answer = try await etcd.client().call("/v3/kv/range", ["key": EtcdClient.base64("junction/\(cluster)/nodes/eu@localhost")])
            #expect((answer["kvs"] as? [Any])?.count == 1, "registered once etcd answered: \(answer)")
            await node.shutdown()

            // Where nothing listens, the node gives up after the lease TTL and says what to check.
            let nowhere = "http://127.0.0.1:\(try await Erl.freePort())"
            let yaml = etcd.yaml("ev@localhost", cluster: cluster, leaseTTL: "2s", requestTimeout: "100ms").replacingOccurrences(of: etcd.endpoints[0], with: nowhere)
            let error = await #expect(throws: RegistrarError.self) {
                _ = try await Node.start(config: try ConfigLoader.load(yaml: yaml), environment: environment, logger: quietLogger)
            }
            #expect("\(error!)".contains("attempts over 2s); check that etcd runs at \(nowhere), or raise the registrar's requestTimeout (100ms)"), "\(error!)")
        }
    }

    @Test("a static route sends names of another data centre to the etcd stack, whose records carry the real address")
    func staticRoute() async throws {
        try await EtcdCluster.with(members: 1) { etcd in
            let registrar = try await startRegistrar()
            let cluster = "c\(UInt32.random(in: 0...UInt32.max))"
            let far = try await Node.start(config: try etcd.nodeConfig("far1@dc2-host", cluster: cluster), environment: environment, logger: quietLogger)
            let gateway = try await Node.start(
                config: try ConfigLoader.load(yaml: """
                    node: {name: route_gw@localhost, cookie: {env: TEST_COOKIE}}
                    stacks:
                      - {name: native, kind: native, registrar: {port: \(registrar.port)}}
                      - name: dc2
                        kind: native
                        registrar: {kind: etcd, etcd: {endpoints: [\(etcd.endpoints[0])], cluster: \(cluster)}}
                    routes:
                      - {match: "@dc2-", resolver: dc2}
                    """), environment: environment, logger: quietLogger)
            #expect(gateway.explainRoutes(for: far.name) == ["1. '@dc2-' weight 0: resolver dc2"])
            let sink = try far.spawn(name: "sink")
            try await gateway.spawn().send(.atom("across"), to: .name("sink", on: far.name))
            #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("across"))
            #expect(gateway.connection(to: far.name)?.stack == "dc2")
            await gateway.shutdown()
            await far.shutdown()
            await registrar.shutdown()
        }
    }

    @Test("etcd over mutual TLS (https endpoints, a client certificate): nodes register and resolve each other")
    func tls() async throws {
        try await EtcdCluster.with(members: 1, tls: true) { etcd in
            let cluster = "c\(UInt32.random(in: 0...UInt32.max))"
            let a = try await Node.start(config: try etcd.nodeConfig("ta@localhost", cluster: cluster), environment: environment, logger: quietLogger)
            let b = try await Node.start(config: try etcd.nodeConfig("tb@localhost", cluster: cluster), environment: environment, logger: quietLogger)
            let sink = try b.spawn(name: "sink")
            try await a.spawn().send(.atom("secure"), to: .name("sink", on: b.name))
            #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("secure"))
            // Without the client certificate, etcd refuses the connection and the node does not start.
            let plain = etcd.yaml("tc@localhost", cluster: cluster).replacingOccurrences(
                of: ", certificate: {certificate: \(EtcdCluster.fixture("node-b.pem")), key: \(EtcdCluster.fixture("node-b.key"))}", with: "")
            let error = await #expect(throws: (any Error).self) {
                _ = try await Node.start(config: try ConfigLoader.load(yaml: plain), environment: environment, logger: quietLogger)
            }
            #expect("\(error!)".contains("no etcd endpoint answered"), "\(error!)")
            await a.shutdown()
            await b.shutdown()
        }
    }

    @Test("a node killed without shutdown leaves the others' caches within the lease TTL; a graceful stop removes it at once")
    func leaving() async throws {
        try await EtcdCluster.with(members: 1) { etcd in
            let cluster = "c\(UInt32.random(in: 0...UInt32.max))"
            let watcher = try await Node.start(config: try etcd.nodeConfig("ew@localhost", cluster: cluster), environment: environment, logger: quietLogger)
            let registrar = try #require(watcher.etcdRegistrar(stack: "dc"))

            // A `junction run` process, killed with SIGKILL: no revoke, the lease expires.
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-node-\(UUID())")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let file = directory.appendingPathComponent("ek.yaml")
            try etcd.yaml("ek@localhost", cluster: cluster, leaseTTL: "3s").write(to: file, atomically: true, encoding: .utf8)
            let joined = event(on: watcher) { $0 == .nodeJoined(stack: "dc", node: "ek@localhost") }
            let killed = try ChildProcess(binary: CommandLineTests.binary, arguments: ["run", "--config", file.path], environment: environment.merging(["PATH": "/usr/bin:/bin"]) { $1 })
            defer { killed.signal(SIGKILL) }
            try await killed.waitForLine(containing: "is up")
            _ = await joined.value
            #expect(registrar.nodes.contains("ek@localhost"))
            let left = event(on: watcher) { $0 == .nodeLeft(stack: "dc", node: "ek@localhost") }
            let clock = ContinuousClock()
            let killedAt = clock.now
            await killed.stop(signal: SIGKILL)
            _ = await left.value
            #expect(!registrar.nodes.contains("ek@localhost"))
            // Bounded by the lease (5 s) and etcd's expiry sweep; a generous bound, not a timing assertion.
            #expect(clock.now - killedAt < .seconds(30))

            let graceful = try await Node.start(config: try etcd.nodeConfig("eg@localhost", cluster: cluster), environment: environment, logger: quietLogger)
            let gracefulLeft = event(on: watcher) { $0 == .nodeLeft(stack: "dc", node: "eg@localhost") }
            await graceful.shutdown()
            let answer = try await etcd.client().call("/v3/kv/range", ["key": EtcdClient.base64("junction/\(cluster)/nodes/eg@localhost")])
            #expect((answer["kvs"] as? [Any] ?? []).isEmpty, "the record is gone when shutdown returns: \(answer)")
            _ = await gracefulLeft.value
            await watcher.shutdown()
        }
    }

    @Test("a compacted watch revision makes the registrar list the cluster again")
    func compaction() async throws {
        try await EtcdCluster.with(members: 1) { etcd in
            let cluster = "c\(UInt32.random(in: 0...UInt32.max))"
            let capture = LogCapture()
            let watcher = try await Node.start(config: try etcd.nodeConfig("ex@localhost", cluster: cluster), environment: environment, logger: capture.logger)
            let registrar = try #require(watcher.etcdRegistrar(stack: "dc"))
            // The watch stops (as when its connection breaks); meanwhile a node registers and
            // the history it would resume from is compacted away.
            registrar.pauseWatch()
            let joined = event(on: watcher) { $0 == .nodeJoined(stack: "dc", node: "ey@localhost") }
            let other = try await Node.start(config: try etcd.nodeConfig("ey@localhost", cluster: cluster), environment: environment, logger: quietLogger)
            let client = try etcd.client()
            for index in 0..<5 { _ = try await client.call("/v3/kv/put", ["key": EtcdClient.base64("unrelated/\(index)"), "value": EtcdClient.base64("x")]) }
            let revision = EtcdClient.int((try await client.call("/v3/kv/range", ["key": EtcdClient.base64("unrelated/0")])["header"] as? [String: Any])?["revision"])!
            _ = try await client.call("/v3/kv/compaction", ["revision": String(revision), "physical": true])
            #expect(!registrar.nodes.contains("ey@localhost"))
            registrar.resumeWatch()
            await capture.waitFor("the watch's revision was compacted")
            _ = await joined.value
            #expect(registrar.nodes.contains("ey@localhost"))
            await other.shutdown()
            await watcher.shutdown()
        }
    }

    @Test("three members: the leader's loss changes nothing; without quorum resolves are stale but served; restarted members heal it all")
    func quorum() async throws {
        try await EtcdCluster.with(members: 3) { etcd in
            let cluster = "c\(UInt32.random(in: 0...UInt32.max))"
            let capture = LogCapture()
            let metrics = TestMetrics()
            let a = try await Node.start(
                config: try etcd.nodeConfig("qa@localhost", cluster: cluster, requestTimeout: "1s"), environment: environment, metrics: metrics, logger: capture.logger)
            let b = try await Node.start(config: try etcd.nodeConfig("qb@localhost", cluster: cluster, requestTimeout: "1s"), environment: environment, logger: quietLogger)
            let registrar = try #require(a.etcdRegistrar(stack: "dc"))
            _ = try await registrar.resolve(b.name)

            // The leader stops: the others elect one; registration and resolution go on.
            let leader = try await etcd.leader()
            await etcd.stop(leader)
            let c = try await Node.start(config: try etcd.nodeConfig("qc@localhost", cluster: cluster, requestTimeout: "1s"), environment: environment, logger: quietLogger)
            let sink = try c.spawn(name: "sink")
            try await a.spawn().send(.atom("after_leader"), to: .name("sink", on: c.name))
            #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("after_leader"))

            // A second member stops: no quorum. Resolves are served from the cache, stale.
            // (First let any staleness from the leader's loss clear.)
            let settled = event(on: a) { $0 == .registrarFresh(stack: "dc") }
            if registrar.isStale { _ = await settled.value } else { settled.cancel() }
            let stale = event(on: a) { if case .registrarStale(stack: "dc", _) = $0 { true } else { false } }
            let second = (leader + 1) % 3
            await etcd.stop(second)
            _ = await stale.value
            #expect(registrar.isStale)
            #expect(capture.contains("resolves are served from the cache, marked stale"))
            let route = try await registrar.resolve(b.name)
            #expect(route.host == "127.0.0.1" && route.port > 0)
            #expect(registrar.summary(for: b.name).contains("cache stale"))
            #expect(try metrics.expectGauge("junction_registrar_stale", [("stack", "dc")]).lastValue == 1)

            // Both come back: fresh again, a's registration held, and new nodes are seen.
            let fresh = event(on: a) { $0 == .registrarFresh(stack: "dc") }
            try etcd.restart(leader)
            try etcd.restart(second)
            _ = await fresh.value
            #expect(!registrar.isStale)
            #expect(try metrics.expectGauge("junction_registrar_stale", [("stack", "dc")]).lastValue == 0)
            let held = try await etcd.client().call("/v3/kv/range", ["key": EtcdClient.base64("junction/\(cluster)/nodes/qa@localhost")])
            #expect((held["kvs"] as? [Any])?.count == 1, "a's registration survived: \(held)")
            let joined = event(on: a) { $0 == .nodeJoined(stack: "dc", node: "qd@localhost") }
            let d = try await Node.start(config: try etcd.nodeConfig("qd@localhost", cluster: cluster, requestTimeout: "1s"), environment: environment, logger: quietLogger)
            _ = await joined.value
            for node in [a, b, c, d] { await node.shutdown() }
        }
    }
}
