import Foundation
import JunctionCore
import Testing

@testable import JunctionLoad

let validScenario = """
    name: mixed
    warmup: 1s
    duration: 5s
    nodes:
      - {name: n1@localhost, kind: native, compression: {mode: message}}
      - {name: e1@localhost, kind: erlang}
      - {name: gw@localhost, kind: gateway, bridges: [{name: e1_echo, node: e1@localhost, process: echo}]}
    routes:
      - {name: direct, node: n1@localhost, senders: 2, rate: 1000, payload: {kind: json, sizes: [{bytes: 100, weight: 3}, {bytes: 2000}]}}
      - {node: gw@localhost, process: e1_echo, messages: 500, compression: {mode: message, threshold: 64}}
    faults:
      - {at: 3s, action: pause, node: n1@localhost, for: 1s}
    """

func scenario(_ yaml: String) throws -> LoadScenario { try ConfigLoader.decode(LoadScenario.self, yaml: yaml) }

@Suite("Load scenarios")
struct LoadScenarioTests {
    @Test("a valid scenario decodes with its defaults")
    func valid() throws {
        let loaded = try scenario(validScenario)
        #expect(loaded.nodes.map(\.kind) == [.native, .erlang, .gateway])
        #expect(loaded.routes[0].rate == 1000 && loaded.routes[0].senders == 2)
        #expect(loaded.routes[1].name == "gw@localhost" && loaded.routes[1].rate == nil && loaded.routes[1].payload.kind == .small)
        #expect(loaded.drain == .seconds(5))
        #expect(loaded.routes[1].messages == 500 && loaded.routes[1].compression?.mode == .message && loaded.routes[1].compression?.threshold == 64)
        // Weighted sizes: three quarters of the draws are 100 bytes.
        let payload = loaded.routes[0].payload
        #expect(payload.size(at: 0.0) == 100 && payload.size(at: 0.74) == 100 && payload.size(at: 0.76) == 2000)
    }

    /// (edited scenario, key path, part of the message); an empty key path: accepted.
    static let mistakes: [(String, String, String)] = [
            (validScenario.replacingOccurrences(of: "duration: 5s", with: "duration: 5s\nspeed: 3"), "speed", "unknown key"),
            (validScenario.replacingOccurrences(of: "kind: erlang", with: "kind: beam"), "nodes[1].kind", "unknown node kind 'beam'"),
            (validScenario.replacingOccurrences(of: "{name: direct, node: n1@localhost", with: "{name: direct, node: n9@localhost"), "routes[0].node", "no node 'n9@localhost'"),
            (validScenario.replacingOccurrences(of: "rate: 1000", with: "rate: 1"), "routes[0].rate", "at least one message per second per sender"),
            (validScenario.replacingOccurrences(of: "at: 3s", with: "at: 9s"), "faults[0].at", "after the run ends"),
            (validScenario.replacingOccurrences(of: ", for: 1s}", with: "}"), "faults[0].for", "pause needs 'for'"),
            (validScenario.replacingOccurrences(of: "kind: native, compression: {mode: message}", with: "kind: native, bridges: []"), "", ""),
            (validScenario.replacingOccurrences(of: "{kind: json, sizes", with: "{kind: small, sizes"), "routes[0].payload.kind", "a small payload has no size"),
            (validScenario.replacingOccurrences(of: "{name: e1@localhost, kind: erlang}", with: "{name: e1@localhost, kind: erlang, compression: {mode: stream}}"), "nodes[1].compression", "no compression"),
            (validScenario.replacingOccurrences(of: "action: pause", with: "action: explode"), "faults[0].action", "unknown fault 'explode'"),
            (validScenario.replacingOccurrences(of: "action: pause, node: n1@localhost", with: "action: blockIp, node: e1@localhost"), "faults[0].action", "use pause or dropLink"),
            (validScenario.replacingOccurrences(of: "messages: 500", with: "senders: 2, messages: 1"), "routes[1].messages", "at least one message per sender"),
            (validScenario.replacingOccurrences(of: "{node: gw@localhost, process: e1_echo", with: "{node: e1@localhost, process: echo"), "routes[1].compression", "no compression"),
    ]

    @Test("mistakes are refused with the key path", arguments: mistakes)
    func refused(yaml: String, keyPath: String, message: String) throws {
        guard !keyPath.isEmpty else {
            _ = try scenario(yaml)  // an empty bridge list on a native node is fine
            return
        }
        let error = try #require(throws: ConfigError.self) { try scenario(yaml) }
        #expect(error.keyPath == keyPath, "\(error)")
        #expect(error.message.contains(message), "\(error)")
    }

    @Test("every shipped scenario in Config/load is valid")
    func shipped() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Config/load")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files == ["erlang-to-native-via-gateway.yaml", "failover.yaml", "mixed-3-stacks.yaml", "native-1to1.yaml"])
        for file in files { _ = try LoadScenario.load(file: directory.appendingPathComponent(file).path) }
    }
}

@Suite("Open-loop schedule")
struct OpenLoopScheduleTests {
    @Test("messages are due at the rate, and a sender that falls behind still measures from when each was due")
    func coordinatedOmission() {
        // The manual clock: nanoseconds since an arbitrary start.
        let schedule = OpenLoopSchedule(start: 5_000_000, ratePerSecond: 1000)
        #expect(schedule.due(0) == 5_000_000 && schedule.due(10) == 15_000_000)
        #expect(schedule.dueCount(at: 4_999_999) == 0)
        #expect(schedule.dueCount(at: 5_000_000) == 1)
        #expect(schedule.dueCount(at: 5_999_999) == 1 && schedule.dueCount(at: 6_000_000) == 2)
        // The sender stalls for 10 ms: at 15 ms eleven messages are due, and it sends them
        // all at once. Answers come 0.5 ms after that: the first one waited 10.5 ms.
        #expect(schedule.dueCount(at: 15_000_000) == 11)
        #expect(schedule.latency(of: 0, answeredAt: 15_500_000) == 10_500_000)
        #expect(schedule.latency(of: 10, answeredAt: 15_500_000) == 500_000)
    }
}

@Suite("Load reports")
struct LoadReportTests {
    func sample() -> LoadReport {
        let recorder = RouteRecorder()
        for value in 1...1000 {
            recorder.sent()
            recorder.answered(latency: UInt64(value) * 1000, second: value % 3, payloadBytes: 100)
        }
        recorder.sent()
        recorder.failed()
        recorder.sent()  // never answered: lost
        let route = recorder.report(name: "to-n1", target: "echo on n1@localhost", mode: "open 1000/s", seconds: 3)
        return LoadReport(
            scenario: "sample, \"quoted\"", machine: "2 x test CPU", durationSeconds: 3, warmupSeconds: 1, routes: [route],
            events: [.init(at: 1.5, text: "fault: killed n1@localhost")], processes: [.init(name: "runner", cpuSeconds: 1.5, maxResidentMegabytes: 30)])
    }

    @Test("the route's figures: percentiles from the histogram, rate, lost and errors")
    func figures() {
        let route = sample().routes[0]
        #expect(route.received == 1000 && route.sent == 1002 && route.lost == 1 && route.errors == 1, "a failed send is an error, not also lost")
        #expect(abs(route.p50 - 500) <= 1 && abs(route.p99 - 990) <= 1 && abs(route.max - 1000) <= 1, "\(route)")
        #expect(route.throughput == [333, 334, 333])
        #expect(abs(route.messagesPerSecond - 1000 / 3) < 0.01)
    }

    @Test("JSON round-trips; CSV has a header and a row per route; the table names every route")
    func writers() throws {
        let report = sample()
        let decoded = try JSONDecoder().decode(LoadReport.self, from: try LoadReportWriter.json(report))
        #expect(decoded == report)
        let csv = LoadReportWriter.csv(report).split(separator: "\n")
        #expect(csv.count == 2 && csv[0].hasPrefix("route,target,mode,msgs_per_s") && csv[1].hasPrefix("to-n1,echo on n1@localhost,open 1000/s,"))
        #expect(LoadReportWriter.table(report).contains("| to-n1 | echo on n1@localhost | open 1000/s |"))
    }

    @Test("the HTML report is self-contained and carries the plots' data")
    func html() throws {
        let report = sample()
        let html = try LoadReportWriter.html(report)
        #expect(html.contains("<svg id=\"latency-plot\"") && html.contains("<svg id=\"throughput-plot\""))
        #expect(html.contains("data-route=\"to-n1\""))
        #expect(!html.contains("http://") && !html.contains("https://"), "no network needed to view it")
        let start = try #require(html.range(of: "<script type=\"application/json\" id=\"report-data\">"))
        let end = try #require(html.range(of: "</script>", range: start.upperBound..<html.endIndex))
        let embedded = String(html[start.upperBound..<end.lowerBound]).replacingOccurrences(of: "<\\/", with: "</")
        #expect(try JSONDecoder().decode(LoadReport.self, from: Data(embedded.utf8)) == report)
        // The throughput line has a point per second; the latency line one per percentile.
        #expect(html.components(separatedBy: "class=\"route\"").count == 3)
    }
}
