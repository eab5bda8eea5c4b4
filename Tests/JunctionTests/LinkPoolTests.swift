import Foundation
import JunctionCore
import JunctionNative
import JunctionTerm
import JunctionTransport
import NIOCore
import NIOPosix
import Testing

@testable import Junction
@testable import JunctionNative

@Suite("Link pool")
struct LinkPoolTests {
    @Test("the dialler opens the pool the acceptor announces, and every link carries traffic")
    func poolIsOpened() async throws {
        let registrar = try await startRegistrar()
        let a = try await startNode(try nodeConfig("a@localhost", stacks: [("native", registrar.port)]))
        let b = try await startNode(
            try nodeConfig("b@localhost", stacks: [("native", registrar.port)], poolSize: 4))
        let sinks = try (0..<8).map { try b.spawn(name: "sink\($0)") }
        let sender = try a.spawn()
        for index in 0..<8 { try await sender.send(.int(index), to: .name("sink\(index)", on: "b@localhost")) }
        for (index, sink) in sinks.enumerated() { #expect(try await sink.receive(timeout: .seconds(10)).term() == .int(index)) }
        let info = try #require(a.connection(to: "b@localhost")?.info)
        #expect(info.poolSize == 4 && info.liveLinks == 4 && info.rejoins == 0)
        #expect(info.links.filter { $0.framesSent > 0 }.count > 1, "8 streams spread over more than one link: \(info.links)")
        let accepted = try #require(b.connection(to: "a@localhost")?.info)
        #expect(accepted.liveLinks == 4 && accepted.links.map(\.framesReceived).reduce(0, +) == 8)
        await a.shutdown()
        await b.shutdown()
        await registrar.shutdown()
    }

    @Test("a link closed mid-stream is rejoined; every message arrives exactly once and in order per pair: 100,000 small terms, or 30,000 distinct 2 KiB records in stream-mode batches",
          arguments: [false, true])
    func linkKilledMidStream(compressed: Bool) async throws {
        let registrar = try await startRegistrar()
        let extra = compressed ? "compression: {level: 1, threshold: 1024, mode: stream}" : ""
        let a = try await startNode(try nodeConfig("a@localhost", stacks: [("native", registrar.port)], stackExtra: extra))
        let b = try await startNode(try nodeConfig("b@localhost", stacks: [("native", registrar.port)], stackExtra: extra))
        let pairs = 6
        let total = compressed ? 30_000 : 100_000
        let perPair = total / pairs
        let records = jsonRecords(64, size: 2048)
        func message(_ value: Int) -> Term { compressed ? .tuple([.int(value), records[value % records.count]]) : .int(value) }
        let sinks = try (0..<pairs).map { try b.spawn(name: "sink\($0)") }
        // The dial returns once every link of the pool has joined, so all three are cut below.
        _ = try await a.connect("b@localhost")
        let (progress, reached) = AsyncStream.makeStream(of: Void.self)
        let receivers = sinks.enumerated().map { index, sink in
            Task {
                var expected = 0
                while expected < perPair {
                    let term = try await sink.receive(timeout: .seconds(60)).term()
                    guard term == message(expected) else {
                        Issue.record("sink\(index) got \(String(describing: term).prefix(80)) where \(expected) was due")
                        return expected
                    }
                    expected += 1
                    if index == 0 && expected == perPair / 3 { reached.yield() }
                }
                return expected
            }
        }
        let senders = (0..<pairs).map { index in
            Task {
                let sender = try a.spawn()
                for value in 0..<perPair { try await sender.send(message(value), to: .name("sink\(index)", on: "b@localhost")) }
            }
        }
        // A third of the way in, cut every link of the pool from the accepting side.
        var iterator = progress.makeAsyncIterator()
        _ = await iterator.next()
        let accepted = try #require(b.connection(to: "a@localhost"))
        for slot in accepted.slots { try await slot.channel?.close() }

        for sender in senders { try await sender.value }
        for receiver in receivers { #expect(try await receiver.value == perPair) }
        let info = try #require(a.connection(to: "b@localhost")?.info)
        #expect(info.rejoins >= 3, "\(info)")
        #expect(info.liveLinks == 3)
        if compressed {
            let frames = info.links.reduce(0) { $0 + $1.framesSent }
            #expect(frames < total, "messages shared batch frames (\(frames) frames for \(total) messages)")
        }
        // Nothing arrived twice: each sink has nothing left.
        for sink in sinks { await #expect(throws: ReceiveTimeout.self) { _ = try await sink.receive(timeout: .milliseconds(200)) } }
        await a.shutdown()
        await b.shutdown()
        await registrar.shutdown()
    }

    @Test("joins with an unknown connection id, a forged proof or a replayed counter are refused and logged")
    func badJoins() async throws {
        let registrar = try await startRegistrar()
        let logs = LogCapture()
        let b = try await startNode(try nodeConfig("b@localhost", stacks: [("native", registrar.port)]), logger: logs.logger)
        let a = try await startNode(try nodeConfig("a@localhost", stacks: [("native", registrar.port)]))
        let sink = try b.spawn(name: "sink")
        try await a.spawn().send(.atom("hello"), to: .name("sink", on: "b@localhost"))
        _ = try await sink.receive(timeout: .seconds(10))
        let connection = try #require(a.connection(to: "b@localhost"))
        let address = try #require(b.listening["native"]?.first)
        let id = connection.negotiated.connectionID
        let key = connection.negotiated.sessionKey

        func attempt(_ request: LinkJoin.Request) async throws -> String {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(to: address).get()
            // The node may close as it refuses, before our write completes.
            try? await channel.writeAndFlush(LinkJoin.frame(request))
            try await channel.closeFuture.get()
            return logs.all.last { $0.contains("refused") } ?? "nothing logged"
        }
        let unknown = try await attempt(LinkJoin.makeRequest(connectionID: id &+ 1, slot: 1, counter: 9, received: 0, sessionKey: key))
        #expect(unknown.contains("unknown connection"))
        let forged = try await attempt(LinkJoin.makeRequest(connectionID: id, slot: 1, counter: 9, received: 0, sessionKey: [UInt8](repeating: 7, count: 32)))
        #expect(forged.contains("wrong proof (forged)"))
        // Slot 1 joined with counter 1 when the connection was made: replaying it is stale.
        let replayed = try await attempt(LinkJoin.makeRequest(connectionID: id, slot: 1, counter: 1, received: 0, sessionKey: key))
        #expect(replayed.contains("stale counter"))
        // The real connection is untouched.
        try await a.spawn().send(.atom("still"), to: .name("sink", on: "b@localhost"))
        #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("still"))
        #expect(connection.info.liveLinks == 3)
        await a.shutdown()
        await b.shutdown()
        await registrar.shutdown()
    }

    @Test("30 MB of 1 KiB messages on one pair flow through the slot's high-water mark without stalling")
    func bulkThroughHighWaterMark() async throws {
        let registrar = try await startRegistrar()
        let a = try await startNode(try nodeConfig("a@localhost", stacks: [("native", registrar.port)], stackExtra: "compression: {enabled: false}"))
        let b = try await startNode(try nodeConfig("b@localhost", stacks: [("native", registrar.port)]))
        let sink = try b.spawn(name: "sink")
        let sender = try a.spawn()
        let blob = Term.binary([UInt8](repeating: 9, count: 1024))
        let count = 30_000
        let receiver = Task { () throws -> Int in
            for index in 0..<count {
                let term = try await sink.receive(timeout: .seconds(30)).term()
                guard term == .tuple([.int(index), blob]) else { return index }
            }
            return count
        }
        for index in 0..<count { try await sender.send(.tuple([.int(index), blob]), to: .name("sink", on: "b@localhost")) }
        #expect(try await receiver.value == count)
        await a.shutdown()
        await b.shutdown()
        await registrar.shutdown()
    }
}
