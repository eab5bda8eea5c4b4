import Foundation
import JunctionCore
import JunctionLoad
import Testing

/// Faults injected into counted open-loop runs against real `junction run` nodes. Each run
/// sends a fixed number of messages on a fixed schedule, so the fault lands mid-traffic;
/// the assertions are on what the report says, not on timing. The runner is the real
/// `junction load` command in a process of its own, so its schedule does not depend on how
/// busy this test process is.
@Suite("junction load, faults", .timeLimit(.minutes(2)))
struct LoadFaultTests {
    func run(_ yaml: String) async throws -> LoadReport {
        _ = try ConfigLoader.decode(LoadScenario.self, yaml: yaml)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("junction-fault-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let scenario = directory.appendingPathComponent("scenario.yaml")
        let report = directory.appendingPathComponent("report.json")
        try yaml.write(to: scenario, atomically: true, encoding: .utf8)
        let load = try ChildProcess(
            binary: CommandLineTests.binary, arguments: ["load", scenario.path, "--json", report.path],
            environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOME": NSTemporaryDirectory()])
        let status = await load.exitStatus()
        guard status == 0 else { throw CommandLineFailure(message: "junction load exited with \(status):\n\(load.standardOutput)\n\(load.output)") }
        return try JSONDecoder().decode(LoadReport.self, from: Data(contentsOf: report))
    }

    @Test("a paused node loses nothing: every message is answered after it resumes, and the pause shows in the latency")
    func pause() async throws {
        let report = try await run("""
            name: pause
            warmup: 0s
            duration: 30s
            drain: 10s
            nodes:
              - {name: lf_p1@localhost, kind: native}
            routes:
              - {name: to-p1, node: lf_p1@localhost, senders: 1, rate: 400, messages: 1200, payload: {kind: small}}
            faults:
              - {at: 1s, action: pause, node: lf_p1@localhost, for: 1s}
            """)
        let route = try #require(report.routes.first)
        #expect(route.sent == 1200 && route.received == 1200 && route.lost == 0 && route.errors == 0, "\(route)")
        #expect(route.max >= 500_000, "messages due during the 1 s pause waited for it: max \(route.max) us")
        let texts = report.events.map(\.text)
        #expect(texts.contains("fault: paused lf_p1@localhost") && texts.contains("fault: resumed lf_p1@localhost"), "\(texts)")
    }

    @Test("a killed node started again: the loss and the reconnect are in the report, and only what the peer had not acknowledged is lost")
    func killAndRestart() async throws {
        let report = try await run("""
            name: kill
            warmup: 0s
            duration: 30s
            drain: 3s
            nodes:
              - {name: lf_k1@localhost, kind: native}
            routes:
              - {name: to-k1, node: lf_k1@localhost, senders: 1, rate: 400, messages: 1600, payload: {kind: small}}
            faults:
              - {at: 1s, action: kill, node: lf_k1@localhost, for: 500ms}
            limits:
              pendingMessages: 20000
              reconnect: {attempts: 40, base: 50ms, cap: 250ms}
            """)
        let route = try #require(report.routes.first)
        let texts = report.events.map(\.text)
        let killed = try #require(texts.firstIndex(of: "fault: killed lf_k1@localhost"), "\(texts)")
        let restarted = try #require(texts.firstIndex(of: "fault: lf_k1@localhost started again"), "\(texts)")
        let lost = try #require(texts.firstIndex { $0.hasPrefix("connectionLost lf_k1@localhost") }, "\(texts)")
        // The runner may reconnect as soon as the node listens, before it logs "is up".
        #expect(restarted > killed && texts[lost...].contains { $0.hasPrefix("connectionEstablished lf_k1@localhost") }, "reconnected after the restart: \(texts)")
        // Only frames the killed peer had taken in but not acknowledged can be lost; what
        // was sent while it was down was retained and answered after the restart.
        let unacknowledged = texts[lost].firstMatch(of: /(\d+) messages queued or sent on it were not acknowledged/).map { Int($0.1)! } ?? 0
        #expect(route.errors == 0 && route.sent == 1600, "\(route); events: \(texts)")
        #expect(route.lost <= unacknowledged, "lost \(route.lost), unacknowledged at the loss \(unacknowledged): \(texts[lost])")
        #expect(route.received + route.lost == route.sent)
        #expect(route.max >= 400_000, "messages sent while the peer was down waited for the restart: max \(route.max) us")
    }

    @Test("blockIp blocks one node's address: its sends fail while the rule holds and resume after; the other node is untouched")
    func blockIp() async throws {
        let report = try await run("""
            name: block
            warmup: 0s
            duration: 30s
            drain: 3s
            nodes:
              - {name: lf_b1@localhost, kind: native}
              - {name: lf_b2@localhost, kind: native}
            routes:
              - {name: to-b1, node: lf_b1@localhost, senders: 1, rate: 400, messages: 2000, payload: {kind: small}}
              - {name: to-b2, node: lf_b2@localhost, senders: 1, rate: 400, messages: 2000, payload: {kind: small}}
            faults:
              - {at: 1s, action: blockIp, node: lf_b1@localhost, for: 1s}
            """)
        let blocked = try #require(report.routes.first { $0.name == "to-b1" })
        let other = try #require(report.routes.first { $0.name == "to-b2" })
        #expect(other.received == 2000 && other.lost == 0 && other.errors == 0, "\(other)")
        #expect(blocked.errors > 0 && blocked.received > 0 && blocked.received + blocked.errors + blocked.lost == 2000, "\(blocked)")
        let texts = report.events.map(\.text)
        let block = try #require(texts.firstIndex { $0.hasPrefix("fault: blocked 127.0.0.") }, "\(texts)")
        let allow = try #require(texts.firstIndex { $0.hasPrefix("fault: allowed 127.0.0.") }, "\(texts)")
        #expect(block < allow && texts[..<allow].contains { $0.hasPrefix("connectionClosed lf_b1@localhost") }, "the block closed the connection: \(texts)")
        #expect(texts[allow...].contains { $0.hasPrefix("connectionEstablished lf_b1@localhost") }, "\(texts)")
        #expect(!texts.contains { $0.contains("lf_b2@localhost") && !$0.hasPrefix("connectionEstablished") }, "\(texts)")
    }
}
