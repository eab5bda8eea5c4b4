import Foundation
import JunctionCore
import JunctionLoad
import Synchronization
import Testing

@Suite("junction load, end to end", .timeLimit(.minutes(1)))
struct LoadRunTests {
    @Test("a counted scenario runs against a real `junction run` node: every message answered once, the run ends when they are, the node is stopped")
    func countedScenario() async throws {
        let scenario = try ConfigLoader.decode(LoadScenario.self, yaml: """
            name: tiny
            warmup: 0s
            duration: 50s
            nodes:
              - {name: lt1@localhost, kind: native}
            routes:
              - {name: to-lt1, node: lt1@localhost, senders: 2, messages: 301, payload: {kind: binary, size: 64}}
            """)
        let lines = LineLog()
        let report = try await LoadRunner(scenario: scenario, binary: CommandLineTests.binary, logger: quietLogger).run { lines.add($0) }
        let route = try #require(report.routes.first)
        #expect(route.sent == 301 && route.received == 301 && route.lost == 0 && route.errors == 0, "\(route)")
        #expect(route.mode == "closed" && route.p50 > 0 && route.p50 <= route.p99 && route.p99 <= route.max)
        #expect(route.megabytesPerSecond > 0)
        #expect(report.durationSeconds < 50, "the run ended when the messages were answered, not after the duration")
        #expect(report.events.contains { $0.text.hasPrefix("connectionEstablished lt1@localhost") }, "\(report.events)")
        #expect(report.processes.map(\.name) == ["runner (junction load)", "lt1@localhost (native)"])
        #expect(lines.all.first == "starting native node lt1@localhost", "\(lines.all)")
    }
}

final class LineLog: Sendable {
    let lines = Mutex<[String]>([])
    func add(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}
