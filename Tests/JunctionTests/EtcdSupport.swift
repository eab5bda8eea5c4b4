import Foundation
import JunctionCore
import JunctionLoad
import NIOPosix
import Synchronization

@testable import JunctionNative

/// Real etcd members (Debian's `etcd-server`) on free loopback ports with temporary data
/// directories, started and stopped by pid. Fails loudly when etcd is not installed.
final class EtcdCluster: Sendable {
    struct Member: Sendable {
        let name: String
        let clientPort: Int
        let peerPort: Int
        let dataDirectory: URL
        var endpoint: String { "http://127.0.0.1:\(clientPort)" }
    }

    /// The test certificates (Tests/JunctionTests/Fixtures/tls).
    static func fixture(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/tls/\(name)").path
    }

    let members: [Member]
    /// Clients must use TLS and present a certificate signed by the test CA.
    let tls: Bool
    let token = "junction-test-\(UUID())"
    let processes: Mutex<[ChildProcess?]>

    init(members: [Member], tls: Bool) {
        self.members = members
        self.tls = tls
        self.processes = Mutex(Array(repeating: nil, count: members.count))
    }

    static var binary: URL {
        get throws {
            let path = "/usr/bin/etcd"
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw CommandLineFailure(message: "etcd is not installed (apt-get install -y etcd-server); scripts/test.sh installs it")
            }
            return URL(fileURLWithPath: path)
        }
    }

    /// Starts `count` members as one cluster and returns once every one serves clients.
    static func start(members count: Int, tls: Bool = false) async throws -> EtcdCluster {
        var members: [Member] = []
        for index in 0..<count {
            members.append(
                Member(
                    name: "m\(index)", clientPort: try await Erl.freePort(), peerPort: try await Erl.freePort(),
                    dataDirectory: FileManager.default.temporaryDirectory.appendingPathComponent("etcd-\(UUID())")))
        }
        let cluster = EtcdCluster(members: members, tls: tls)
        do {
            for index in members.indices { try cluster.launch(index) }
            for index in members.indices { try await cluster.waitUntilServing(index) }
        } catch {
            await cluster.shutdown()
            throw error
        }
        return cluster
    }

    /// Runs `body` with a started cluster and stops every member afterwards, also when
    /// `body` throws (a failing test leaves no etcd behind).
    static func with<T>(members: Int, tls: Bool = false, _ body: (EtcdCluster) async throws -> T) async throws -> T {
        let cluster = try await start(members: members, tls: tls)
        do {
            let result = try await body(cluster)
            await cluster.shutdown()
            return result
        } catch {
            await cluster.shutdown()
            throw error
        }
    }

    var endpoints: [String] { members.map { tls ? $0.endpoint.replacingOccurrences(of: "http://", with: "https://") : $0.endpoint } }

    func launch(_ index: Int) throws {
        let member = members[index]
        let initialCluster = members.map { "\($0.name)=http://127.0.0.1:\($0.peerPort)" }.joined(separator: ",")
        let clientURL = endpoints[index]
        let security =
            tls
            ? ["--cert-file", Self.fixture("node-a.pem"), "--key-file", Self.fixture("node-a.key"), "--client-cert-auth", "--trusted-ca-file", Self.fixture("ca.pem")]
            : []
        let process = try ChildProcess(
            binary: try Self.binary,
            arguments: security + [
                "--name", member.name, "--data-dir", member.dataDirectory.path,
                "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
                "--listen-peer-urls", "http://127.0.0.1:\(member.peerPort)", "--initial-advertise-peer-urls", "http://127.0.0.1:\(member.peerPort)",
                "--initial-cluster", initialCluster, "--initial-cluster-token", token, "--initial-cluster-state", "new",
                "--heartbeat-interval", "50", "--election-timeout", "500", "--logger", "zap", "--log-outputs", "stderr",
            ],
            environment: ["PATH": "/usr/bin:/bin"])
        processes.withLock { $0[index] = process }
    }

    func waitUntilServing(_ index: Int) async throws {
        guard let process = processes.withLock({ $0[index] }) else { return }
        try await process.waitForLine(containing: tls ? "serving client traffic securely" : "serving client traffic")
    }

    /// Stops member `index` (SIGTERM, by pid; a paused member is resumed to take it) and
    /// waits until it exited.
    func stop(_ index: Int) async {
        let process = processes.withLock { processes -> ChildProcess? in
            defer { processes[index] = nil }
            return processes[index]
        }
        process?.signal(SIGCONT)
        await process?.stop()
    }

    /// Pauses member `index` (SIGSTOP, by pid): its sockets accept connections, but it
    /// answers nothing until `resume`.
    func pause(_ index: Int) { processes.withLock { $0[index] }?.signal(SIGSTOP) }

    func resume(_ index: Int) { processes.withLock { $0[index] }?.signal(SIGCONT) }

    /// Starts member `index` again on its data directory.
    func restart(_ index: Int) throws { try launch(index) }

    /// The index of the member that leads the cluster now.
    func leader() async throws -> Int {
        let client = try self.client()
        let status = try await client.call("/v3/maintenance/status", [:])
        let leader = EtcdClient.int(status["leader"])
        for index in members.indices {
            let one = try self.client(only: index)
            let answer = try await one.call("/v3/maintenance/status", [:])
            if EtcdClient.int((answer["header"] as? [String: Any])?["member_id"]) == leader { return index }
        }
        throw CommandLineFailure(message: "no member says it is the leader \(leader ?? -1)")
    }

    func client(only index: Int? = nil, timeout: ConfigDuration = .seconds(2)) throws -> EtcdClient {
        let endpoints = index.map { [self.endpoints[$0]] } ?? self.endpoints
        let settings = EtcdSettings(
            endpoints: endpoints, cluster: "x", requestTimeout: timeout, trust: tls ? Self.fixture("ca.pem") : nil,
            certificate: tls ? CertificateFiles(certificate: Self.fixture("node-b.pem"), key: Self.fixture("node-b.key")) : nil)
        return try EtcdClient(settings: settings, group: MultiThreadedEventLoopGroup.singleton)
    }

    func shutdown() async {
        for index in members.indices { await stop(index) }
        for member in members { try? FileManager.default.removeItem(at: member.dataDirectory) }
    }

    /// A node config on this cluster: one native stack whose registrar is etcd. The lease
    /// and timeouts leave room for a machine busy with the rest of the suite (in CI a node
    /// or etcd itself can be starved for seconds; a lease lost that way is taken again,
    /// but a resolve in between would miss it).
    func nodeConfig(_ name: String, cluster: String, leaseTTL: String = "15s", requestTimeout: String = "2s") throws -> JunctionConfig {
        try ConfigLoader.load(yaml: yaml(name, cluster: cluster, leaseTTL: leaseTTL, requestTimeout: requestTimeout))
    }

    func yaml(_ name: String, cluster: String, leaseTTL: String = "15s", requestTimeout: String = "2s") -> String {
        let security =
            tls ? ", trust: \(Self.fixture("ca.pem")), certificate: {certificate: \(Self.fixture("node-b.pem")), key: \(Self.fixture("node-b.key"))}" : ""
        return """
        node: {name: \(name), cookie: {env: TEST_COOKIE}}
        stacks:
          - name: dc
            kind: native
            acceptors: [{host: 127.0.0.1, port: 0}]
            registrar:
              kind: etcd
              etcd: {endpoints: [\(endpoints.joined(separator: ", "))], cluster: \(cluster), leaseTTL: \(leaseTTL), requestTimeout: \(requestTimeout)\(security)}
        """
    }
}
