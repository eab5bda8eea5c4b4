import Junction
import JunctionTerm
import Testing
import JunctionCore
import JunctionNative
import Logging
import NIOPosix
import Synchronization

/// Collects log lines so tests can assert what an operator would read.
final class LogCapture: Sendable {
    let lines = Mutex<[String]>([])
    let (arrivals, arrived) = AsyncStream.makeStream(of: String.self)

    var logger: Logger {
        var logger = Logger(label: "test") { _ in CapturingHandler(capture: self) }
        logger.logLevel = .debug
        return logger
    }

    func contains(_ text: String) -> Bool { lines.withLock { $0.contains { $0.contains(text) } } }

    /// Waits until a line containing `text` has been logged (one waiter per capture).
    func waitFor(_ text: String) async {
        if contains(text) { return }
        for await line in arrivals where line.contains(text) { return }
    }
    var all: [String] { lines.withLock { $0 } }
}

struct CapturingHandler: LogHandler {
    let capture: LogCapture
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let line = "\(event.level) \(event.message) \(metadata.merging(event.metadata ?? [:]) { $1 })"
        capture.lines.withLock { $0.append(line) }
        capture.arrived.yield(line)
    }
}

/// A registrar server on a kernel-picked loopback port, so parallel tests never collide.
/// Waits for the status event `matching` on `node`'s status port (subscribed now, so
/// events from here on count).
func event(on node: Node, _ matching: @escaping @Sendable (NetworkEvent) -> Bool) -> Task<NetworkEvent, Never> {
    let stream = node.networkStatus()
    return Task {
        for await update in stream {
            if case .event(let event) = update, matching(event) { return event }
        }
        return .connectionClosed(PeerInfo(stack: "", node: "never", address: ""))
    }
}

/// Follows one status subscription through a stall of the connection to `peer`: the
/// first `connectionStalled` that the connections table still shows when it is read
/// (on a loaded machine a gap of `stalledAfter` can come while the socket buffers still
/// fill, and be over by then: that one is passed over), then the `connectionResumed`
/// after it.
struct StallFollower {
    let node: Node
    let peer: String
    var updates: AsyncStream<NetworkStatusUpdate>.Iterator

    init(node: Node, peer: String) {
        self.node = node
        self.peer = peer
        updates = node.networkStatus().makeAsyncIterator()
    }

    /// The senders waiting at the stall and the connection's row while it lasts.
    mutating func stall() async -> (waiting: Int, row: ConnectionStatus)? {
        while let update = await updates.next() {
            guard case .event(.connectionStalled(let info, let waiting)) = update, info.node == peer else { continue }
            if let row = node.connectionStatuses().first(where: { $0.peer == peer }), row.state == "stalled" { return (waiting, row) }
        }
        return nil
    }

    /// How long the stall lasted, once it is over.
    mutating func resume() async -> Duration? {
        while let update = await updates.next() {
            if case .event(.connectionResumed(let info, let stalledFor)) = update, info.node == peer { return stalledFor }
        }
        return nil
    }
}

func startRegistrar() async throws -> EmbeddedRegistrarServer {
    try await EmbeddedRegistrarServer.start(host: "127.0.0.1", port: 0, group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "registrar"))
}

/// A node configuration in YAML: one native stack per (name, registrar port), the
/// first being the default, plus the given `routes:` section.
/// `stackExtra` is YAML added to every stack (indented as a stack key), e.g.
/// `"compression: {enabled: false}"`.
func nodeConfig(
    _ name: String, stacks: [(String, Int)], routes: String = "[]", cookieVariable: String = "TEST_COOKIE", stackExtra: String = "",
    poolSize: Int = 3, limits: String = "{}", handshakeTimeout: String = "5s"
) throws -> JunctionConfig {
    let stackYAML = stacks.map { stack in
        """
          - name: \(stack.0)
            kind: native
            acceptors:
              - host: 127.0.0.1
                port: 0
                poolSize: \(poolSize)
            registrar:
              host: 127.0.0.1
              port: \(stack.1)
            handshakeTimeout: \(handshakeTimeout)
            \(stackExtra)
        """
    }.joined(separator: "\n")
    return try ConfigLoader.load(yaml: """
        node:
          name: \(name)
          cookie:
            env: \(cookieVariable)
        stacks:
        \(stackYAML)
        routes: \(routes)
        limits: \(limits)
        """)
}

/// Nodes log warnings and worse unless a test captures their logs.
let quietLogger: Logger = {
    var logger = Logger(label: "node")
    logger.logLevel = .warning
    return logger
}()

func startNode(_ config: JunctionConfig, cookie: String = "test-cookie", hidden: Bool = false, logger: Logger = quietLogger) async throws -> Node {
    try await Node.start(config: config, hidden: hidden, environment: ["TEST_COOKIE": cookie], logger: logger)
}

/// Checks that `target`'s `echo` still answers a call from a fresh node (one bad peer
/// must not take a node down).
func expectStillServes(_ target: NodeName, registrarPort: Int, cookie: String = "test-cookie") async throws {
    let friend = try await startNode(try nodeConfig("friend@localhost", stacks: [("native", registrarPort)]), cookie: cookie)
    let me = try friend.spawn()
    try await me.send(.tuple([.pid(me.pid), .atom("still_here")]), to: .name("echo", on: target))
    #expect(try await me.receive(timeout: .seconds(10)).term() == .tuple([.atom("echo"), .atom("still_here")]))
    await friend.shutdown()
}
