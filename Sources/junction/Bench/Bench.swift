import ArgumentParser
import CZlib
import Foundation
import Junction
import JunctionCore
import JunctionNative
import JunctionTerm
import JunctionTransport
import Logging
import NIOCore
import NIOPosix
import Synchronization

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark Junction against Erlang/OTP distribution on this machine.",
        subcommands: [BenchRun.self, BenchServe.self],
        defaultSubcommand: BenchRun.self)
}

/// Starts a receiving `junction` process, runs every scenario from a hidden node in this
/// process, then the same scenarios between two OTP nodes, and reports both side by side.
struct BenchRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the benchmark scenarios on Junction and on Erlang/OTP (the default).",
        discussion: "Build with -c release first: swift run -c release junction bench")

    @OptionGroup var options: ConfigOptions

    @Option(help: "Messages per run of the small-term scenarios (others send a fraction).")
    var count = 1_000_000

    @Option(help: "Timed runs per scenario (median reported), after one warm-up of a tenth.")
    var runs = 3

    @Option(help: "Senders (and receivers) of the N-to-N scenarios.")
    var senders = 2

    @Option(help: "Event-loop threads of the receiving junction process.")
    var serverThreads = 1

    @Option(help: "Round trips for the latency measurement.")
    var calls = 20_000

    @Option(help: "Only scenarios whose name contains this text.")
    var only: String?

    @Flag(inversion: .prefixedNo, help: "Measure the Erlang/OTP reference in the same run.")
    var erlang = true

    @Flag(help: "Print the report as JSON instead of tables.")
    var json = false

    func run() async throws {
        var logger = options.logger("junction-bench")
        if options.logLevel == .info { logger.logLevel = .warning }
        let records = benchRecords()
        let recordTerms = records.map { Term.binary($0) }
        let blob = Term.binary([UInt8](repeating: 0x5A, count: 1024))
        // Erlang-stack scenarios send to the OTP reference node, so they need it.
        let scenarios = BenchScenario.all(senders: senders).filter { (only == nil || $0.name.contains(only!)) && (erlang || $0.stack == .native) }

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("junction-bench-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var config = try options.load()
        let group = BusyPoll.eventLoopGroup(threads: 1, window: config.node.busyPoll.timeAmount)
        let registrar = try await EmbeddedRegistrarServer.start(host: "127.0.0.1", port: 0, group: group, logger: logger)
        config.node.eventLoopThreads = serverThreads
        config.stacks = [config.defaultStack]
        config.stacks[0].registrar.port = registrar.port
        let configFile = directory.appendingPathComponent("bench.yaml")
        try Self.yaml(for: config).write(to: configFile, atomically: true, encoding: .utf8)
        let cookie = "bench-\(UInt64.random(in: 0...UInt64.max))"
        let serverName: NodeName = "bench-server@localhost"
        let server = try ServerProcess(
            arguments: ["bench", "serve", "--config", configFile.path, "--name", serverName.description, "--sinks", String(senders)], cookie: cookie)
        defer { server.stop() }

        var reports: [ScenarioReport] = []
        for scenario in scenarios where scenario.stack == .native {
            var clientConfig = config
            clientConfig.stacks[0].compression.enabled = scenario.compression != nil
            if let mode = scenario.compression { clientConfig.stacks[0].compression.mode = mode }
            let client = try await Node.start(
                config: clientConfig, name: try NodeName("bench-client-\(UInt32.random(in: 0...UInt32.max))@localhost"), hidden: true,
                environment: ["JUNCTION_COOKIE": cookie], group: group, logger: logger)
            let result = try await Self.throughput(
                scenario, count: count / scenario.countDivisor, runs: runs, client: client, server: serverName, serverPID: server.pid,
                records: recordTerms, blob: blob, payloadBytes: scenario.payloadBytes(records)) { client.connection(to: serverName)?.bytesSent ?? 0 }
            await client.shutdown()
            reports.append(ScenarioReport(scenario: scenario.name, compression: scenario.compression?.rawValue ?? "off", junction: result, erlang: nil))
        }
        let latencyClient = try await Node.start(
            config: config, name: try NodeName("bench-latency-\(UInt32.random(in: 0...UInt32.max))@localhost"), hidden: true,
            environment: ["JUNCTION_COOKIE": cookie], group: group, logger: logger)
        let junctionLatency = try await Task(executorPreference: latencyClient.executor) {
            try await Self.latency(calls: calls, client: latencyClient, server: serverName)
        }.value
        await latencyClient.shutdown()
        server.stop()
        await registrar.shutdown()

        var erlangLatency: LatencyResult?
        if erlang {
            let reference = try ErlangReference(sinks: senders, records: records, directory: directory)
            defer { reference.stop() }
            for scenario in scenarios where scenario.stack == .bridge {
                let result = try await Self.throughputThroughBridge(
                    scenario, count: count / scenario.countDivisor, runs: runs, reference: reference, config: config, directory: directory, group: group,
                    logger: logger, payloadBytes: scenario.payloadBytes(records))
                reports.append(ScenarioReport(scenario: scenario.name, compression: "off", junction: result, erlang: nil))
            }
            for scenario in scenarios where scenario.stack == .erlang {
                let result = try await Self.throughputToOTP(
                    scenario, count: count / scenario.countDivisor, runs: runs, reference: reference, group: group, logger: logger, records: recordTerms,
                    blob: blob, payloadBytes: scenario.payloadBytes(records))
                reports.append(ScenarioReport(scenario: scenario.name, compression: "off", junction: result, erlang: nil))
            }
            var cache: [String: ThroughputResult] = [:]
            for index in reports.indices {
                let scenario = scenarios.first { $0.name == reports[index].scenario }!
                // Erlang distribution has no compression: every JSON row compares with its plain run.
                let key = "\(scenario.payload)-\(scenario.senders)"
                if cache[key] == nil {
                    let runCount = count / scenario.countDivisor
                    var rates: [Double] = []
                    var cpu: [Double] = []
                    var wire: [Double] = []
                    for run in 1...runs {
                        progress("erlang \(scenario.name): run \(run)/\(runs)")
                        let result = try reference.throughput(scenario, count: runCount)
                        rates.append(result.rate)
                        cpu.append(result.cpuPerMessage)
                        wire.append(result.wireBytes)
                    }
                    progressDone("erlang \(scenario.name): \(Int(median(rates))) msgs/s")
                    cache[key] = ThroughputResult(
                        messagesPerRun: runCount, rates: rates, cpuPerMessage: cpu, wireBytesPerMessage: median(wire),
                        payloadBytesPerMessage: scenario.payloadBytes(records))
                }
                reports[index].erlang = cache[key]
            }
            progress("erlang latency")
            erlangLatency = try reference.latency(calls: calls)
            progressDone("erlang latency: p50 \(erlangLatency!.p50) us")
        }

        let report = BenchReport(
            machine: Self.machine(), runs: runs, scenarios: reports, zlibBaselineRate: Self.zlibBaseline(records, flushEach: true),
            zlibUnflushedRate: Self.zlibBaseline(records, flushEach: false), deflaterRate: Self.deflaterRate(records),
            zlibInflateRate: Self.zlibInflateBaseline(records), inflaterRate: try Self.inflaterRate(records),
            junctionLatency: junctionLatency, erlangLatency: erlangLatency)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            Self.printTables(report)
        }
        try await group.shutdownGracefully()
    }

    // MARK: - Junction measurements

    /// The Erlang-stack scenarios: a hidden Junction node with an `erlang` stack sends to
    /// the reference OTP node's sinks over Erlang distribution, as the OTP client does.
    static func throughputToOTP(
        _ scenario: BenchScenario, count: Int, runs: Int, reference: ErlangReference, group: any EventLoopGroup, logger: Logger, records: [Term],
        blob: Term, payloadBytes: Int
    ) async throws -> ThroughputResult {
        let stack = StackSettings(name: "erlang", kind: .erlang, erlang: ErlangSettings(embeddedEpmd: false, hidden: true))
        let config = JunctionConfig(
            node: NodeSettings(name: "junction_bench@127.0.0.1", cookie: CookieSource(env: "JUNCTION_COOKIE")), stacks: [stack], routes: [],
            limits: LimitSettings())
        let server = try NodeName(reference.serverName)
        let client = try await Node.start(
            config: config, name: try NodeName("junction_bench_\(UInt32.random(in: 0...UInt32.max))@127.0.0.1"), hidden: true,
            environment: ["JUNCTION_COOKIE": reference.cookie], group: group, logger: logger)
        defer { Task { await client.shutdown() } }
        return try await throughput(
            scenario, count: count, runs: runs, client: client, server: server, serverPID: reference.serverPID, records: records, blob: blob,
            payloadBytes: payloadBytes) { client.erlangConnection(to: server)?.bytesSent ?? 0 }
    }

    /// The bridge scenarios: the OTP client sends to `sinkN` on a Junction gateway (in
    /// this process, with a native and an Erlang stack) whose bridges forward to the sinks
    /// of a native `junction bench serve` process. CPU counts the client, the gateway and
    /// the receiving node.
    static func throughputThroughBridge(
        _ scenario: BenchScenario, count: Int, runs: Int, reference: ErlangReference, config: JunctionConfig, directory: URL, group: any EventLoopGroup,
        logger: Logger, payloadBytes: Int
    ) async throws -> ThroughputResult {
        let registrar = try await EmbeddedRegistrarServer.start(host: "127.0.0.1", port: 0, group: group, logger: logger)
        var serverConfig = config
        serverConfig.stacks[0].registrar.port = registrar.port
        let configFile = directory.appendingPathComponent("bridge-server.yaml")
        try Self.yaml(for: serverConfig).write(to: configFile, atomically: true, encoding: .utf8)
        let serverName: NodeName = "bench-bridged@localhost"
        let server = try ServerProcess(
            arguments: ["bench", "serve", "--config", configFile.path, "--name", serverName.description, "--sinks", String(scenario.senders)],
            cookie: reference.cookie)
        defer { server.stop() }
        let gatewayName = try NodeName("junction_gw_\(UInt32.random(in: 0...UInt32.max))@127.0.0.1")
        let gatewayConfig = JunctionConfig(
            node: NodeSettings(name: gatewayName, cookie: CookieSource(env: "JUNCTION_COOKIE")),
            stacks: [serverConfig.stacks[0], StackSettings(name: "erlang", kind: .erlang, erlang: ErlangSettings(embeddedEpmd: false))],
            bridges: (1...scenario.senders).map { BridgeSettings(name: "sink\($0)", node: serverName, process: "sink\($0)") })
        let gateway = try await Node.start(config: gatewayConfig, environment: ["JUNCTION_COOKIE": reference.cookie], group: group, logger: logger)
        var rates: [Double] = []
        var cpu: [Double] = []
        var wire: [Double] = []
        for run in 1...runs {
            progress("\(scenario.name): run \(run)/\(runs)")
            let cpu0 = ProcessCPU.seconds() + ProcessCPU.seconds(server.pid)
            let result = try reference.throughput(scenario, count: count, target: gatewayName.description)
            let relayCPU = ProcessCPU.seconds() + ProcessCPU.seconds(server.pid) - cpu0
            rates.append(result.rate)
            cpu.append(result.cpuPerMessage + relayCPU / Double(count + count / 10))
            wire.append(result.wireBytes)
        }
        progressDone("\(scenario.name): \(Int(median(rates))) msgs/s")
        await gateway.shutdown()
        await registrar.shutdown()
        return ThroughputResult(messagesPerRun: count, rates: rates, cpuPerMessage: cpu, wireBytesPerMessage: median(wire), payloadBytesPerMessage: payloadBytes)
    }

    static func throughput(
        _ scenario: BenchScenario, count: Int, runs: Int, client: Node, server: NodeName, serverPID: Int32, records: [Term], blob: Term,
        payloadBytes: Int, wireBytes: @escaping @Sendable () -> Int
    ) async throws -> ThroughputResult {
        let senders = try (0..<scenario.senders).map { _ in try client.spawn() }
        let sent = SentCounter()

        func once(_ count: Int, label: String) async throws -> (rate: Double, cpu: Double, wire: Double) {
            sent.value.store(0, ordering: .relaxed)
            let cpu0 = ProcessCPU.seconds() + ProcessCPU.seconds(serverPID)
            let wire0 = wireBytes()
            let start = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for (index, sender) in senders.enumerated() {
                    tasks.addTask {
                        let sink = Destination.name("sink\(index + 1)", on: server)
                        let share = count / senders.count
                        for message in 0..<share {
                            try await sender.send(scenario.message(message, records: records, blob: blob), to: sink)
                            if message & 0xFFF == 0xFFF { sent.value.add(0x1000, ordering: .relaxed) }
                        }
                        try await sender.send(.tuple([.pid(sender.pid), .atom("done")]), to: sink)
                        _ = try await sender.receive(timeout: .seconds(300))
                    }
                }
                tasks.addTask {
                    while !Task.isCancelled {
                        try await Task.sleep(for: .seconds(1))
                        let elapsed = (ContinuousClock.now - start).seconds
                        let done = sent.value.load(ordering: .relaxed)
                        progress("\(label): \(done)/\(count) sent, \(Int(Double(done) / elapsed)) msgs/s")
                    }
                }
                for _ in senders { try await tasks.next() }
                tasks.cancelAll()
            }
            let elapsed = (ContinuousClock.now - start).seconds
            let cpu = ProcessCPU.seconds() + ProcessCPU.seconds(serverPID) - cpu0
            let wire = wireBytes() - wire0
            return (Double(count) / elapsed, cpu / Double(count), Double(wire) / Double(count))
        }

        _ = try await once(max(senders.count, count / 10), label: "\(scenario.name): warm-up")
        var rates: [Double] = []
        var cpu: [Double] = []
        var wire: [Double] = []
        for run in 1...runs {
            let result = try await once(count, label: "\(scenario.name): run \(run)/\(runs)")
            rates.append(result.rate)
            cpu.append(result.cpu)
            wire.append(result.wire)
        }
        progressDone("\(scenario.name): \(Int(median(rates))) msgs/s")
        return ThroughputResult(
            messagesPerRun: count, rates: rates, cpuPerMessage: cpu, wireBytesPerMessage: median(wire), payloadBytesPerMessage: payloadBytes)
    }

    static func latency(calls: Int, client: Node, server: NodeName) async throws -> LatencyResult {
        let me = try client.spawn()
        let echo = Destination.name("echo", on: server)
        var samples: [UInt64] = []
        samples.reserveCapacity(calls)
        for index in 0..<(calls + 1000) {
            let start = ContinuousClock.now
            try await me.send(.tuple([.pid(me.pid), .int(index)]), to: echo)
            _ = try await me.receive()
            let elapsed = ContinuousClock.now - start
            if index >= 1000 { samples.append(UInt64(elapsed.components.attoseconds / 1_000_000_000) + UInt64(elapsed.components.seconds) * 1_000_000_000) }
            if index % 5000 == 0 { progress("junction latency: \(index)/\(calls + 1000) calls") }
        }
        let result = LatencyResult(nanoseconds: samples)
        progressDone("junction latency: p50 \(result.p50) us")
        return result
    }

    /// Plain zlib on one core, called directly: level 1 as zlib ships it, one raw deflate
    /// stream (no checksum), output to a reused buffer. With `flushEach`, a sync flush
    /// per record, as framing one message at a time needs (the target's reference);
    /// without, no flush at all: the limit of any batching.
    static func zlibBaseline(_ records: [[UInt8]], flushEach: Bool) -> Double {
        var stream = z_stream()
        precondition(junction_deflateInit2(&stream, 1, -15) == Z_OK, "deflateInit failed: out of memory")
        defer { deflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: 1 << 16)
        let total = 20_000
        let start = ContinuousClock.now
        for index in 0..<total {
            records[index % records.count].withUnsafeBytes { input in
                let status = output.withUnsafeMutableBytes { out in
                    Self.zlibCall(&stream, from: input, into: out) { deflate(&$0, flushEach ? Z_SYNC_FLUSH : Z_NO_FLUSH) }.status
                }
                precondition(status == Z_OK, "deflate into 64 KiB must complete")
            }
        }
        return Double(total) / (ContinuousClock.now - start).seconds
    }

    /// Points `stream` at `input` and `output`, runs `call` (a deflate or an inflate) and
    /// returns its status with the bytes it wrote.
    static func zlibCall(
        _ stream: inout z_stream, from input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer,
        _ call: (inout z_stream) -> Int32
    ) -> (status: Int32, produced: Int) {
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = uInt(input.count)
        stream.next_out = output.baseAddress?.assumingMemoryBound(to: Bytef.self)
        stream.avail_out = uInt(output.count)
        let status = call(&stream)
        return (status, output.count - Int(stream.avail_out))
    }

    /// Plain zlib inflating on one core: the raw stream of level 1 with a sync flush per
    /// record, a record per call, into a reused buffer (the limit for the receiving side).
    static func zlibInflateBaseline(_ records: [[UInt8]]) -> Double {
        var deflating = z_stream()
        precondition(junction_deflateInit2(&deflating, 1, -15) == Z_OK, "deflateInit failed: out of memory")
        defer { deflateEnd(&deflating) }
        let total = 20_000
        var output = [UInt8](repeating: 0, count: 1 << 16)
        let frames: [[UInt8]] = (0..<total).map { index in
            records[index % records.count].withUnsafeBytes { input in
                output.withUnsafeMutableBytes { out in
                    let (status, produced) = Self.zlibCall(&deflating, from: input, into: out) { deflate(&$0, Z_SYNC_FLUSH) }
                    precondition(status == Z_OK, "deflate into 64 KiB must complete")
                    return Array(out.prefix(produced))
                }
            }
        }
        var inflating = z_stream()
        precondition(junction_inflateInit2(&inflating, -15) == Z_OK, "inflateInit failed: out of memory")
        defer { inflateEnd(&inflating) }
        let start = ContinuousClock.now
        for frame in frames {
            frame.withUnsafeBytes { input in
                let status = output.withUnsafeMutableBytes { out in
                    Self.zlibCall(&inflating, from: input, into: out) { inflate(&$0, Z_SYNC_FLUSH) }.status
                }
                precondition(status == Z_OK && inflating.avail_in == 0, "inflate of a whole flushed record must complete")
            }
        }
        return Double(total) / (ContinuousClock.now - start).seconds
    }

    /// Junction's `stream`-mode deflater on one core, the same records and count.
    static func deflaterRate(_ records: [[UInt8]]) -> Double {
        let deflater = Deflater(settings: CompressionSettings(level: 1, threshold: 0, mode: .stream))
        let total = 20_000
        let start = ContinuousClock.now
        for index in 0..<total {
            records[index % records.count].withUnsafeBytes { deflater.compress($0) { _, _ in } }
        }
        return Double(total) / (ContinuousClock.now - start).seconds
    }

    /// Junction's `stream`-mode inflater on one core, inflating what the deflater made of
    /// the same records (a frame each) into a new buffer per frame, as a link does.
    static func inflaterRate(_ records: [[UInt8]]) throws -> Double {
        let deflater = Deflater(settings: CompressionSettings(level: 1, threshold: 0, mode: .stream))
        let allocator = ByteBufferAllocator()
        let total = 20_000
        let frames = (0..<total).map { index in
            records[index % records.count].withUnsafeBytes { input in
                deflater.compress(input) { compressed, flags in (allocator.buffer(bytes: compressed), flags) }
            }
        }
        let inflater = Inflater(limit: 1 << 20)
        let start = ContinuousClock.now
        for (payload, flags) in frames {
            _ = try inflater.inflate(payload, flags: flags, allocator: allocator)
        }
        return Double(total) / (ContinuousClock.now - start).seconds
    }

    // MARK: - report

    static func printTables(_ report: BenchReport) {
        print("## junction bench (\(report.machine); median of \(report.runs) runs)\n")
        print("| scenario | compression | Junction msgs/s | MB/s | wire B/msg | CPU us/msg | Erlang msgs/s | MB/s | wire B/msg | CPU us/msg | ratio |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for row in report.scenarios {
            let j = row.junction
            var line = "| \(row.scenario) | \(row.compression) | \(Int(j.medianRate)) | \(format(j.megabytesPerSecond)) | \(format(j.wireBytesPerMessage ?? 0)) | \(format(j.medianCPUMicroseconds))"
            if let e = row.erlang, let ratio = row.ratio {
                line += " | \(Int(e.medianRate)) | \(format(e.megabytesPerSecond)) | \(format(e.wireBytesPerMessage ?? 0)) | \(format(e.medianCPUMicroseconds)) | \(format(ratio))x |"
            } else {
                line += " | - | - | - | - | - |"
            }
            print(line)
        }
        print("\nPlain zlib, level 1, one raw stream with a sync flush per 2 KiB record, one core: \(Int(report.zlibBaselineRate)) records/s")
        print("Plain zlib, level 1, one raw stream never flushed (the bound for batching), one core: \(Int(report.zlibUnflushedRate)) records/s")
        print("Junction's stream-mode deflater alone (level 1 looking for 12-byte matches, a sync flush per record), one core: \(Int(report.deflaterRate)) records/s")
        print("Plain zlib inflating that flushed stream, a record per call, one core: \(Int(report.zlibInflateRate)) records/s")
        print("Junction's stream-mode inflater alone (what the deflater made of the same records, a frame each), one core: \(Int(report.inflaterRate)) records/s")
        print(
            "N-to-N over 1-to-1 `stream` on \(ProcessInfo.processInfo.activeProcessorCount) cores, if nothing ran but these two (a pair's deflate is serial,"
                + " every record is inflated too): at most \(format(report.nToNCeiling))x")
        print("\n| round trip (echo call) | calls | p50 us | p90 us | p99 us | max us |")
        print("| --- | --- | --- | --- | --- | --- |")
        for (name, latency) in [("Junction", report.junctionLatency), ("Erlang", report.erlangLatency)] {
            guard let latency else { continue }
            print("| \(name) | \(latency.calls) | \(format(latency.p50)) | \(format(latency.p90)) | \(format(latency.p99)) | \(format(latency.max)) |")
        }
    }

    static func format(_ value: Double) -> String {
        value >= 100 ? String(Int(value.rounded())) : String(format: "%.2f", value)
    }

    static func machine() -> String {
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("model name") }?
            .split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
        return "\(ProcessInfo.processInfo.activeProcessorCount) x \(cpu)"
    }

    /// The YAML for a config: the bench writes the server's config file from it.
    static func yaml(for config: JunctionConfig) -> String {
        let stack = config.stacks[0]
        return """
            node:
              name: \(config.node.name)
              cookie: {env: JUNCTION_COOKIE}
              eventLoopThreads: \(config.node.eventLoopThreads)
              busyPoll: \(config.node.busyPoll)
            stacks:
              - name: \(stack.name)
                kind: native
                acceptors: [{host: 127.0.0.1, port: 0}]
                registrar: {host: \(stack.registrar.host), port: \(stack.registrar.port)}
                maxMessageSize: \(stack.maxMessageSize)
                writeCoalescing: \(stack.writeCoalescing)
                compression: {enabled: true, level: 1, threshold: \(stack.compression.threshold), mode: stream}
            """
    }
}

/// Messages sent so far in a run, for the progress line.
final class SentCounter: Sendable {
    let value = Atomic<Int>(0)
}

/// The receiving `junction bench serve` process.
final class ServerProcess: Sendable {
    let process: Process
    var pid: Int32 { process.processIdentifier }

    init(arguments: [String], cookie: String) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(["JUNCTION_COOKIE": cookie]) { $1 }
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        var seen = Data()
        while !String(decoding: seen, as: UTF8.self).contains("ready") {
            let chunk = output.fileHandleForReading.availableData
            guard !chunk.isEmpty else { throw ValidationError("the benchmark's receiving node exited before it was ready") }
            seen += chunk
        }
    }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        process.waitUntilExit()
    }
}

func progress(_ text: String) {
    FileHandle.standardError.write(Data("\r\u{1B}[K\(text)".utf8))
}

func progressDone(_ text: String) {
    FileHandle.standardError.write(Data("\r\u{1B}[K\(text)\n".utf8))
}

