import Foundation
import Junction
import JunctionCore
import JunctionErlang
import JunctionNative
import JunctionTerm
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Runs a `LoadScenario`: starts its nodes on loopback (a registrar and an epmd of its
/// own, on kernel-picked ports), drives every route from a node of its own, injects the
/// faults, and stops everything it started, by pid, at the end.
public final class LoadRunner: Sendable {
    let scenario: LoadScenario
    /// The `junction` executable that native nodes and gateways run.
    let binary: URL
    let logger: Logger
    let cookie = "load-\(UInt64.random(in: 0...UInt64.max))"

    public init(scenario: LoadScenario, binary: URL, logger: Logger) {
        self.scenario = scenario
        self.binary = binary
        self.logger = logger
    }

    /// A started node of the scenario and how to start it again (after a kill).
    final class Started: Sendable {
        let node: LoadNode
        /// Where it listens (native nodes and gateways).
        let place: Place?
        let start: @Sendable () async throws -> ChildProcess
        let process: Mutex<ChildProcess>
        /// CPU seconds of incarnations that were killed.
        let pastCPU = Mutex(0.0)
        init(node: LoadNode, place: Place?, process: ChildProcess, start: @escaping @Sendable () async throws -> ChildProcess) {
            self.node = node
            self.place = place
            self.process = Mutex(process)
            self.start = start
        }
        var current: ChildProcess { process.withLock { $0 } }
    }

    public func run(progress: @escaping @Sendable (String) -> Void) async throws -> LoadReport {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("junction-load-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let group = MultiThreadedEventLoopGroup.singleton
        let registrar = try await EmbeddedRegistrarServer.start(host: "127.0.0.1", port: 0, group: group, logger: logger)
        let epmd = try await EpmdServer.start(port: 0, group: group, logger: logger)
        let epmdPort = epmd.address?.port ?? 0
        var started: [Started] = []
        var runner: Node?
        do {
            let places = try await placeNodes(group: group)
            for node in scenario.nodes {
                progress("starting \(node.kind.rawValue) node \(node.name)")
                let start = try starter(for: node, places: places, registrarPort: registrar.port, epmdPort: epmdPort, directory: directory)
                started.append(Started(node: node, place: places[node.name], process: try await start(), start: start))
            }
            let node = try await Node.start(
                config: try runnerConfig(places: places, registrarPort: registrar.port, epmdPort: epmdPort), environment: ["JUNCTION_COOKIE": cookie],
                logger: logger)
            runner = node
            let report = try await drive(node, started: started, progress: progress)
            await node.shutdown()
            runner = nil
            await stop(started)
            await registrar.shutdown()
            await epmd.shutdown()
            return report
        } catch {
            await runner?.shutdown()
            await stop(started)
            await registrar.shutdown()
            await epmd.shutdown()
            throw error
        }
    }

    func stop(_ started: [Started]) async {
        for node in started { await node.current.stop(signal: node.node.kind == .erlang ? SIGKILL : SIGTERM) }
    }

    // MARK: - topology

    /// Where a native node or gateway listens.
    struct Place: Sendable {
        let host: String
        let port: Int
    }

    /// Gives every native node and gateway a loopback address of its own (127.0.0.10 and
    /// up, so a `blockIp` fault hits one node) and a port that stays its own for the run
    /// (so a node started again after a kill is found where it was). Every node reaches
    /// them by static routes.
    func placeNodes(group: any EventLoopGroup) async throws -> [NodeName: Place] {
        var places: [NodeName: Place] = [:]
        for (index, node) in scenario.nodes.enumerated() where node.kind != .erlang {
            let host = "127.0.0.\(10 + index)"
            // The kernel picks a free port on that address; outgoing connections leave from
            // 127.0.0.1, so nothing else takes it before the node binds it.
            let probe = try await ServerBootstrap(group: group).bind(host: host, port: 0).get()
            let port = probe.localAddress?.port ?? 0
            try await probe.close()
            places[node.name] = Place(host: host, port: port)
        }
        return places
    }

    /// Static routes to the placed nodes, for a node's `routes:` list (`except` its own name).
    func placedRoutes(_ places: [NodeName: Place], except name: NodeName?, compression: (NodeName) -> CompressionSettings?) -> [String] {
        scenario.nodes.compactMap { node in
            guard node.name != name, let place = places[node.name] else { return nil }
            var line = "{match: \"^\(NSRegularExpression.escapedPattern(for: node.name.description))$\", route: {stack: native, host: \(place.host), port: \(place.port)}"
            if let settings = compression(node.name) { line += ", compression: \(Self.yaml(settings))" }
            return line + "}"
        }
    }

    static func yaml(_ compression: CompressionSettings) -> String {
        "{enabled: \(compression.enabled), level: \(compression.level), threshold: \(compression.threshold), mode: \(compression.mode.rawValue)}"
    }

    /// Starts `node` as a child process and returns once it serves.
    func starter(for node: LoadNode, places: [NodeName: Place], registrarPort: Int, epmdPort: Int, directory: URL) throws -> @Sendable () async throws -> ChildProcess {
        var environment = ["JUNCTION_COOKIE": cookie, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        environment["HOME"] = ProcessInfo.processInfo.environment["HOME"] ?? NSTemporaryDirectory()
        let binary = self.binary
        switch node.kind {
        case .native, .gateway:
            let file = directory.appendingPathComponent("\(node.name.alive).yaml")
            try nodeYAML(node, places: places, registrarPort: registrarPort, epmdPort: epmdPort).write(to: file, atomically: true, encoding: .utf8)
            let native = environment
            return {
                let process = try ChildProcess(binary: binary, arguments: ["run", "--config", file.path], environment: native)
                try await process.waitForLine(containing: "is up")
                return process
            }
        case .erlang:
            environment["ERL_EPMD_PORT"] = String(epmdPort)
            let script = """
                register(echo, spawn(fun Loop() -> receive {From, Msg} when is_pid(From) -> From ! {echo, Msg}, Loop(); _ -> Loop() end end)),
                io:format("ready~n"), receive after infinity -> ok end
                """
            let arguments = [
                "erl", "-sname", node.name.description, "-setcookie", cookie, "-start_epmd", "false", "-kernel", "inet_dist_use_interface", "{127,0,0,1}",
                "-noshell", "-eval", script,
            ]
            let erlang = environment
            return {
                let process = try ChildProcess(binary: URL(fileURLWithPath: "/usr/bin/env"), arguments: arguments, environment: erlang)
                try await process.waitForLine(containing: "ready")
                return process
            }
        }
    }

    /// The names of the scenario's Erlang nodes, as an anchored route pattern.
    var erlangPattern: String? {
        let names = scenario.nodes.filter { $0.kind == .erlang }.map { NSRegularExpression.escapedPattern(for: $0.name.description) }
        return names.isEmpty ? nil : "^(\(names.joined(separator: "|")))$"
    }

    func nodeYAML(_ node: LoadNode, places: [NodeName: Place], registrarPort: Int, epmdPort: Int) -> String {
        let place = places[node.name] ?? Place(host: "127.0.0.1", port: 0)
        var yaml = """
            node: {name: \(node.name), cookie: {env: JUNCTION_COOKIE}}
            stacks:
              - name: native
                kind: native
                registrar: {host: 127.0.0.1, port: \(registrarPort)}
                acceptors: [{host: \(place.host), port: \(place.port)}]
            """
        if let compression = node.compression { yaml += "\n    compression: \(Self.yaml(compression))" }
        var routes = placedRoutes(places, except: node.name) { _ in nil }
        if node.kind == .gateway {
            yaml += """

                  - name: erlang
                    kind: erlang
                    acceptors: [{host: 127.0.0.1, port: 0}]
                    erlang: {epmdPort: \(epmdPort), embeddedEpmd: false}
                """
            if let erlangPattern { routes.append("{match: \"\(erlangPattern)\", resolver: erlang}") }
        }
        if !routes.isEmpty { yaml += "\nroutes:\n" + routes.map { "  - \($0)" }.joined(separator: "\n") }
        if node.kind == .gateway, !node.bridges.isEmpty {
            yaml += "\nbridges:\n" + node.bridges.map { "  - {name: \($0.name), node: \($0.node), process: \($0.process)}" }.joined(separator: "\n")
        }
        return yaml + "\n"
    }

    /// The runner's own node: native, and Erlang when the scenario has Erlang nodes.
    func runnerConfig(places: [NodeName: Place], registrarPort: Int, epmdPort: Int) throws -> JunctionConfig {
        var stacks = [StackSettings(name: "native", registrar: RegistrarSettings(host: "127.0.0.1", port: registrarPort))]
        var routeLines = placedRoutes(places, except: nil) { name in scenario.routes.first { $0.node == name && $0.compression != nil }?.compression }
        if let erlangPattern {
            stacks.append(StackSettings(name: "erlang", kind: .erlang, erlang: ErlangSettings(epmdPort: epmdPort, embeddedEpmd: false)))
            routeLines.append("{match: \"\(erlangPattern)\", resolver: erlang}")
        }
        let routes = try ConfigLoader.decode([RouteSettings].self, yaml: "[\(routeLines.joined(separator: ", "))]")
        return JunctionConfig(
            node: NodeSettings(name: try NodeName("load_\(UInt32.random(in: 0...UInt32.max))@localhost"), cookie: CookieSource(env: "JUNCTION_COOKIE")),
            stacks: stacks, routes: routes, limits: scenario.limits)
    }

    // MARK: - traffic

    /// One route's senders and what they recorded.
    struct RouteRun: Sendable {
        let route: LoadRoute
        let recorder = RouteRecorder()
        var mode: String { route.rate.map { "open \($0)/s" } ?? "closed" }
    }

    func drive(_ node: Node, started: [Started], progress: @escaping @Sendable (String) -> Void) async throws -> LoadReport {
        let clock = ContinuousClock()
        let origin = clock.now
        let nanos: @Sendable (ContinuousClock.Instant) -> UInt64 = { instant in
            let elapsed = instant - origin
            return UInt64(elapsed.components.seconds) * 1_000_000_000 + UInt64(elapsed.components.attoseconds / 1_000_000_000)
        }
        let warmup = UInt64(scenario.warmup.nanoseconds)
        let end = warmup + UInt64(scenario.duration.nanoseconds)
        let events = EventLog()
        let event: @Sendable (String) -> Void = { text in
            let at = (Double(nanos(clock.now)) - Double(warmup)) / 1e9
            events.entries.withLock { $0.append(.init(at: at, text: text)) }
            progress("\(String(format: "%.1f", at)) s: \(text)")
        }
        let statusTask = Task {
            for await update in node.networkStatus() {
                if case .event(let change) = update { event("\(change)") }
            }
        }
        defer { statusTask.cancel() }
        let runs = scenario.routes.map { RouteRun(route: $0) }
        let records = benchRecordsText()

        var senders: [Sender] = []
        for run in runs {
            for index in 0..<run.route.senders {
                senders.append(
                    Sender(
                        route: run.route, index: index, process: try node.spawn(), recorder: run.recorder, records: records, warmup: warmup, end: end,
                        now: { nanos(clock.now) }, report: event))
            }
        }
        let drainEnd = end + UInt64(scenario.drain.nanoseconds)
        try await withThrowingTaskGroup(of: Void.self) { background in
            for fault in scenario.faults {
                background.addTask { try await self.inject(fault, into: node, started: started, at: origin + .nanoseconds(fault.at.nanoseconds), event: event) }
            }
            background.addTask {
                // One progress line a second until the traffic is done.
                var last = 0
                while nanos(clock.now) < end {
                    try await Task.sleep(for: .seconds(1))
                    let states = runs.map(\.recorder.progress)
                    let received = states.reduce(0) { $0 + $1.received }
                    let seconds = (Double(nanos(clock.now)) - Double(warmup)) / 1e9
                    progress(
                        String(
                            format: "%@ %.0f s: %d msgs/s, p50 %d us, p99 %d us, %d errors", seconds < 0 ? "warm-up" : "run", abs(seconds), received - last,
                            states.map(\.p50).max() ?? 0, states.map(\.p99).max() ?? 0, states.reduce(0) { $0 + $1.errors }))
                    last = received
                }
            }
            // The traffic: routes with a message count may finish before `duration`; then
            // the run ends, and faults not yet due are not injected.
            await withTaskGroup(of: Void.self) { traffic in
                for sender in senders {
                    traffic.addTask { await sender.send() }
                    traffic.addTask { await sender.receive(drain: UInt64(self.scenario.drain.nanoseconds), drainEnd: drainEnd) }
                }
            }
            background.cancelAll()
            while let result = await background.nextResult() {
                if case .failure(let error) = result, !(error is CancellationError) { throw error }
            }
        }
        let measuredEnd = min(nanos(clock.now), end)
        let seconds = max(Double(Int64(measuredEnd) - Int64(warmup)) / 1e9, 0.001)
        return LoadReport(
            scenario: scenario.name, machine: Self.machine(), durationSeconds: seconds, warmupSeconds: Double(warmup) / 1e9,
            routes: runs.map { $0.recorder.report(name: $0.route.name, target: "\($0.route.process) on \($0.route.node)", mode: $0.mode, seconds: seconds) },
            events: events.entries.withLock { $0 }, processes: usage(of: started))
    }

    /// Does `fault` at `instant` (and undoes it after its `for`).
    func inject(_ fault: LoadFault, into node: Node, started: [Started], at instant: ContinuousClock.Instant, event: @Sendable (String) -> Void) async throws {
        try await Task.sleep(until: instant, clock: .continuous)
        guard let target = started.first(where: { $0.node.name == fault.node }) else { return }
        let pause = fault.duration.map { Duration.nanoseconds($0.nanoseconds) }
        switch fault.action {
        case .kill:
            let process = target.current
            let cpu = ProcessSample.cpuSeconds(process.pid)
            await process.stop(signal: SIGKILL)
            target.pastCPU.withLock { $0 += cpu }
            event("fault: killed \(fault.node)")
            if let pause {
                try await Task.sleep(for: pause)
                let restarted = try await target.start()
                target.process.withLock { $0 = restarted }
                event("fault: \(fault.node) started again")
            }
        case .pause:
            target.current.signal(SIGSTOP)
            event("fault: paused \(fault.node)")
            try await Task.sleep(for: pause ?? .seconds(1))
            target.current.signal(SIGCONT)
            event("fault: resumed \(fault.node)")
        case .blockIp:
            guard let place = target.place, let address = IPAddress(place.host) else { return }
            await node.request(.blockIp(address))
            event("fault: blocked \(address) (\(fault.node))")
            try await Task.sleep(for: pause ?? .seconds(1))
            await node.request(.allowIp(address))
            event("fault: allowed \(address) again")
        case .dropLink:
            // The sockets close as if the network dropped them: native links rejoin, an
            // Erlang connection is lost and redialled.
            for channel in node.connection(to: fault.node)?.channels ?? [] { channel.close(promise: nil) }
            node.erlangConnection(to: fault.node)?.channel.close(promise: nil)
            event("fault: dropped the links to \(fault.node)")
        }
    }

    func usage(of started: [Started]) -> [LoadReport.ProcessUsage] {
        var usage = [LoadReport.ProcessUsage(name: "runner (junction load)", cpuSeconds: ProcessSample.cpuSeconds(getpid()), maxResidentMegabytes: ProcessSample.peakResidentMegabytes(getpid()))]
        for node in started {
            let pid = node.current.pid
            usage.append(
                .init(
                    name: "\(node.node.name) (\(node.node.kind.rawValue))", cpuSeconds: ProcessSample.cpuSeconds(pid) + node.pastCPU.withLock { $0 },
                    maxResidentMegabytes: ProcessSample.peakResidentMegabytes(pid)))
        }
        return usage
    }

    static func machine() -> String {
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("model name") }?
            .split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
        return "\(ProcessInfo.processInfo.activeProcessorCount) x \(cpu)"
    }

    /// JSON-like text to cut payloads from (it compresses like service traffic).
    func benchRecordsText() -> [UInt8] {
        var text = ""
        var index = 0
        while text.utf8.count < 64 << 10 {
            text += "{\"id\":\(index * 7919 % 100_003),\"name\":\"user\(index % 997)\",\"active\":\(index % 3 == 0),\"score\":\(Double(index % 1000) / 10)},"
            index += 1
        }
        return Array(text.utf8)
    }
}

/// The events of a run, as they happen.
final class EventLog: Sendable {
    let entries = Mutex<[LoadReport.Event]>([])
}

/// One sending process of a route, and the task that collects its answers.
struct Sender: Sendable {
    let route: LoadRoute
    let index: Int
    let process: ProcessHandle
    let recorder: RouteRecorder
    let records: [UInt8]
    let warmup: UInt64
    let end: UInt64
    let now: @Sendable () -> UInt64
    /// Adds an event to the report (the first failure of each kind).
    let report: @Sendable (String) -> Void
    /// For a closed loop: the answer to the outstanding message.
    let answered = AsyncStream.makeStream(of: Void.self)

    var destination: Destination { .name(route.process, on: route.node) }

    /// The shortest sleep of an open-loop sender, 100 us: at high rates it wakes once per
    /// tick and sends every message that fell due meanwhile (each measured from its due
    /// time, so the wait counts in its latency) instead of waking once per message. A
    /// coarser tick saves more CPU but adds to every latency it measures (250 us added
    /// about 90 us to p50 at 20,000 msgs/s; BENCHMARKS.md).
    static let tick: UInt64 = 100_000

    /// `{Pid, {m, Seq, DueNanos, Payload}}`; `echo` answers `{echo, {m, Seq, DueNanos, Payload}}`.
    func message(_ sequence: Int, due: UInt64) -> (Term, Int) {
        let size = route.payload.size(at: Double.random(in: 0..<1))
        let payload: Term
        switch route.payload.kind {
        case .small: payload = .atom("x")
        case .binary: payload = .binary([UInt8](repeating: UInt8(truncatingIfNeeded: sequence), count: size))
        case .json:
            let start = Int.random(in: 0..<max(records.count - size, 1))
            payload = .binary(Array(records[start..<min(start + size, records.count)]))
        }
        return (.tuple([.pid(process.pid), .tuple([.atom("m"), .int(sequence), .int(Int(due)), payload])]), size)
    }

    /// Sends the route's messages on schedule (or one at a time, closed loop), then tells
    /// its receiver how many went out and how many of those failed.
    func send() async {
        var sequence = 0
        var failures = 0
        let limit = self.limit
        if let rate = route.rate {
            let schedule = OpenLoopSchedule(start: now(), ratePerSecond: Double(rate) / Double(route.senders))
            while sequence < limit {
                let current = now()
                guard current < end else { break }
                let due = min(schedule.dueCount(at: current), limit)
                while sequence < due {
                    if await !sendOne(sequence, due: schedule.due(sequence)) { failures += 1 }
                    sequence += 1
                }
                let next = schedule.due(sequence)
                let before = now()
                if sequence < limit, next > before { try? await Task.sleep(for: .nanoseconds(max(next - before, Self.tick))) }
            }
        } else {
            var iterator = answered.stream.makeAsyncIterator()
            while now() < end, sequence < limit {
                if await !sendOne(sequence, due: now()) { failures += 1 }
                sequence += 1
                guard await iterator.next() != nil else { break }
            }
        }
        try? await process.send(.tuple([.atom("sent_all"), .int(sequence), .int(failures)]), to: .pid(process.pid))
    }

    /// Sends message `sequence`; false when the node refused it.
    func sendOne(_ sequence: Int, due: UInt64) async -> Bool {
        let (term, _) = message(sequence, due: due)
        if due >= warmup { recorder.sent() }
        do {
            try await process.send(term, to: destination)
            return true
        } catch {
            if due >= warmup, recorder.failed("\(type(of: error))") { report("route \(route.name): a send failed: \(error)") }
            if route.rate == nil { answered.continuation.yield() }
            return false
        }
    }

    /// This sender's share of the route's message count (`Int.max` without one).
    var limit: Int { route.messages.map { $0 / route.senders + (index < $0 % route.senders ? 1 : 0) } ?? Int.max }

    /// Records the answers until every message sent is answered, or `drain` after the
    /// sender is done (never past `drainEnd`). Timers post `drain_over` to the process, so
    /// the receive loop needs no timeout of its own.
    func receive(drain: UInt64, drainEnd: UInt64) async {
        let process = process
        let now = now
        let wake: @Sendable (UInt64) -> Task<Void, any Error> = { at in
            Task {
                let left = Int64(at) - Int64(now())
                if left > 0 { try await Task.sleep(for: .nanoseconds(left)) }
                try await process.send(.atom("drain_over"), to: .pid(process.pid))
            }
        }
        var timers = [wake(drainEnd)]
        defer {
            for timer in timers { timer.cancel() }
            answered.continuation.finish()
        }
        var answers = 0
        var expected = Int.max
        while answers < expected {
            guard let reply = try? await process.receive(), let term = try? reply.term() else { return }
            guard case .tuple(let outer) = term else {
                if case .atom("drain_over") = term { return }
                continue
            }
            if outer.count == 3, case .atom("sent_all") = outer[0], case .int(let sent) = outer[1], case .int(let failures) = outer[2] {
                expected = sent - failures
                timers.append(wake(min(drainEnd, now() + drain)))
                continue
            }
            guard outer.count == 2, case .tuple(let fields) = outer[1], fields.count == 4, case .int(let due) = fields[2] else { continue }
            let answeredAt = now()
            let bytes: Int = if case .binary(let payload) = fields[3] { payload.count } else { 0 }
            answers += 1
            if UInt64(due) >= warmup, UInt64(due) < end {
                recorder.answered(latency: answeredAt > UInt64(due) ? answeredAt - UInt64(due) : 0, second: Int((answeredAt - warmup) / 1_000_000_000), payloadBytes: bytes)
            }
            if route.rate == nil { answered.continuation.yield() }
        }
    }
}

/// CPU and memory of a process, from /proc.
enum ProcessSample {
    static func cpuSeconds(_ pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func peakResidentMegabytes(_ pid: Int32) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return kilobytes / 1024
    }
}
