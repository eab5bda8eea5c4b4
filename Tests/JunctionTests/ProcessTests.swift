import Foundation
import Junction
import JunctionTerm
import Synchronization
import Testing

/// Processes on one node.
@Suite("Processes", .timeLimit(.minutes(1)))
struct ProcessTests {
    final class Flag: Sendable {
        let raised = Atomic(false)
    }

    @Test("processes that send and receive without ever waiting take turns with other work: a task started after them runs before any of them is done")
    func busyProcessesTakeTurns() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let node = try await startNode(try nodeConfig("fair@localhost", stacks: [("native", registrar.port)]))
        defer { Task { await node.shutdown() } }
        // More busy processes than Swift's cooperative pool has threads (one per core);
        // local sends find room and receives find messages, so neither ever suspends.
        let count = 10_000
        let probeRan = Flag()
        var loops: [Task<Bool, any Error>] = []
        for _ in 0...ProcessInfo.processInfo.activeProcessorCount {
            let (sender, sink) = (try node.spawn(), try node.spawn())
            loops.append(Task {
                for value in 0..<count { try await sender.send(.int(value), to: .pid(sink.pid)) }
                for value in 0..<count { #expect(try await sink.receive().term() == .int(value)) }
                return probeRan.raised.load(ordering: .sequentiallyConsistent)
            })
        }
        let probe = Task { probeRan.raised.store(true, ordering: .sequentiallyConsistent) }
        for loop in loops { #expect(try await loop.value, "a busy process ended before a task started after it had run") }
        await probe.value
    }
}
