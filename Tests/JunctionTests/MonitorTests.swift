import Junction
import JunctionCore
import JunctionTerm
import Testing

/// Monitors between native nodes: `ProcessHandle.monitor` and the frames behind it.
@Suite("Native monitors", .timeLimit(.minutes(1)))
struct MonitorTests {
    @Test("a monitor fires when the process exits (normal), at once for a missing one (noproc), never after demonitor, and on connection end (noconnection); it keeps its place among the pair's messages")
    func monitors() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let a = try await startNode(try nodeConfig("a@localhost", stacks: [("native", registrar.port)]))
        let b = try await startNode(try nodeConfig("b@localhost", stacks: [("native", registrar.port)]))
        defer { Task { await a.shutdown(); await b.shutdown() } }
        let svc = try b.spawn(name: "svc")
        let other = try b.spawn(name: "other")
        let third = try b.spawn()
        let me = try a.spawn()

        let onSvc = try await me.monitor(.name("svc", on: "b@localhost"))
        let onNobody = try await me.monitor(.name("nobody", on: "b@localhost"))
        #expect(try await me.receive(timeout: .seconds(10)).term() == .tuple([.atom("DOWN"), .ref(onNobody), .atom("process"), .tuple([.atom("nobody"), .atom("b@localhost")]), .atom("noproc")]))

        // A message after the monitor, to the same process, arrives after it: once svc
        // has it, the monitor is in force (svc exiting earlier would mean noproc).
        try await me.send(.atom("hello"), to: .name("svc", on: "b@localhost"))
        #expect(try await svc.receive(timeout: .seconds(10)).term() == .atom("hello"))
        // Messages the process sent before exiting arrive before its DOWN.
        try await svc.send(.atom("last_words"), to: .pid(me.pid))
        svc.exit()
        #expect(try await me.receive(timeout: .seconds(10)).term() == .atom("last_words"))
        #expect(try await me.receive(timeout: .seconds(10)).term() == .tuple([.atom("DOWN"), .ref(onSvc), .atom("process"), .tuple([.atom("svc"), .atom("b@localhost")]), .atom("normal")]))

        let cancelled = try await me.monitor(.name("other", on: "b@localhost"))
        try me.demonitor(cancelled)
        let onThird = try await me.monitor(.pid(third.pid))
        other.exit()
        // b closes the connection (and keeps it closed): the monitor on `third` fires with
        // noconnection; none comes for `other`.
        await b.request(.disconnectSystem("a@localhost"))
        #expect(try await me.receive(timeout: .seconds(10)).term() == .tuple([.atom("DOWN"), .ref(onThird), .atom("process"), .pid(third.pid), .atom("noconnection")]))
        await #expect(throws: ReceiveTimeout.self) { _ = try await me.receive(timeout: .milliseconds(300)) }
    }

    @Test("monitors that race their targets' exits each fire exactly once (normal or noproc)")
    func racingExits() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let a = try await startNode(try nodeConfig("a@localhost", stacks: [("native", registrar.port)]))
        let b = try await startNode(try nodeConfig("b@localhost", stacks: [("native", registrar.port)]))
        defer { Task { await a.shutdown(); await b.shutdown() } }
        let me = try a.spawn()
        let count = 500
        var references = Set<Reference>()
        for _ in 0..<count {
            let target = try b.spawn()
            async let reference = me.monitor(.pid(target.pid))
            target.exit()
            references.insert(try await reference)
        }
        for _ in 0..<count {
            let down = try await me.receive(timeout: .seconds(10)).term()
            guard case .tuple(let fields) = down, fields.count == 5, case .ref(let reference) = fields[1], fields[4] == .atom("normal") || fields[4] == .atom("noproc")
            else {
                Issue.record("not a DOWN: \(down)")
                return
            }
            #expect(references.remove(reference) != nil, "a second DOWN for \(reference)")
        }
        #expect(references.isEmpty)
        await #expect(throws: ReceiveTimeout.self) { _ = try await me.receive(timeout: .milliseconds(300)) }
    }
}
