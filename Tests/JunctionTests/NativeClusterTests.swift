import Foundation
import NIOCore
import NIOPosix
import JunctionCore
import JunctionNative
import JunctionTerm
import JunctionTransport
import Testing

@testable import Junction

@Suite("Native nodes on loopback")
struct NativeClusterTests {
    /// Nodes a and b on one registrar, a process registered as "sink" on b and one on a
    /// to send; all stopped after `body`.
    func withSinkAndSender(_ body: (Node, ProcessHandle, ProcessHandle) async throws -> Void) async throws {
        let registrar = try await startRegistrar()
        let a = try await startNode(try nodeConfig("a@localhost", stacks: [("native", registrar.port)]))
        let b = try await startNode(try nodeConfig("b@localhost", stacks: [("native", registrar.port)]))
        let outcome: Result<Void, any Error>
        do {
            try await body(a, try b.spawn(name: "sink"), try a.spawn())
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        await a.shutdown()
        await b.shutdown()
        await registrar.shutdown()
        try outcome.get()
    }

    @Test("two nodes exchange 100,000 messages in order")
    func hundredThousandInOrder() async throws {
        let registrar = try await startRegistrar()
        let a = try await startNode(try nodeConfig("a@localhost", stacks: [("native", registrar.port)]))
        let b = try await startNode(try nodeConfig("b@localhost", stacks: [("native", registrar.port)]))
        let sink = try b.spawn(name: "sink")
        let sender = try a.spawn()
        let count = 100_000
        let receiver = Task {
            var expected = 0
            while expected < count {
                let term = try await sink.receive(timeout: .seconds(30)).term()
                guard case .tuple(let elements) = term, elements.count == 2, elements[0] == .atom("seq"), case .int(let value) = elements[1] else {
                    Issue.record("unexpected message \(term)")
                    return expected
                }
                #expect(value == expected, "message \(value) arrived where \(expected) was due")
                if value != expected { return expected }
                expected += 1
            }
            return expected
        }
        for index in 0..<count {
            try await sender.send(.tuple([.atom("seq"), .int(index)]), to: .name("sink", on: "b@localhost"))
        }
        #expect(try await receiver.value == count)
        #expect(a.connections.all().count == 1)
        await a.shutdown()
        await b.shutdown()
        await registrar.shutdown()
    }

    @Test("static routes send b* nodes to one registrar and every other name to the default one")
    func routesPickTheRegistrar() async throws {
        let main = try await startRegistrar()
        let clusterB = try await startRegistrar()
        let routes = #"[{match: "^b", weight: 10, resolver: cluster-b}]"#
        let a = try await startNode(try nodeConfig("a@localhost", stacks: [("native", main.port), ("cluster-b", clusterB.port)], routes: routes))
        let b = try await startNode(try nodeConfig("b1@localhost", stacks: [("native", clusterB.port)]))
        let c = try await startNode(try nodeConfig("c@localhost", stacks: [("native", main.port)]))
        let echoB = try b.spawn(name: "echo")
        let echoC = try c.spawn(name: "echo")
        let services = [Task { try await EchoService.run(echoB) }, Task { try await EchoService.run(echoC) }]

        let me = try a.spawn()
        try await me.send(.tuple([.pid(me.pid), .atom("to_b")]), to: .name("echo", on: "b1@localhost"))
        #expect(try await me.receive(timeout: .seconds(10)).term() == .tuple([.atom("echo"), .atom("to_b")]))
        try await me.send(.tuple([.pid(me.pid), .atom("to_c")]), to: .name("echo", on: "c@localhost"))
        #expect(try await me.receive(timeout: .seconds(10)).term() == .tuple([.atom("echo"), .atom("to_c")]))
        #expect(a.explainRoutes(for: "b1@localhost") == ["1. '^b' weight 10: resolver cluster-b"])
        #expect(a.explainRoutes(for: "c@localhost") == ["1. no static route matches: default resolver (stack native)"])

        // Without the route, b1 is unknown to the default registrar: the error lists the attempt.
        let d = try await startNode(try nodeConfig("d@localhost", stacks: [("native", main.port)]))
        let lost = try d.spawn()
        let error = try await #require(throws: DialError.self) {
            try await lost.send(.atom("hello"), to: .name("echo", on: "b1@localhost"))
        }
        #expect(error.description.contains("default resolver (stack native)"))
        #expect(error.description.contains("'b1' is not registered"))

        for service in services { service.cancel() }
        for node in [a, b, c, d] { await node.shutdown() }
        await main.shutdown()
        await clusterB.shutdown()
    }

    @Test("a wrong cookie is refused on both sides, logged as such, and the node goes on serving")
    func wrongCookie() async throws {
        let registrar = try await startRegistrar()
        let acceptorLogs = LogCapture()
        let diallerLogs = LogCapture()
        let acceptor = try await startNode(try nodeConfig("acceptor@localhost", stacks: [("native", registrar.port)]), cookie: "right", logger: acceptorLogs.logger)
        let intruder = try await startNode(try nodeConfig("intruder@localhost", stacks: [("native", registrar.port)]), cookie: "wrong", logger: diallerLogs.logger)
        let echo = try acceptor.spawn(name: "echo")
        let service = Task { try await EchoService.run(echo) }

        let sender = try intruder.spawn()
        let error = try await #require(throws: DialError.self) {
            try await sender.send(.atom("hi"), to: .name("echo", on: "acceptor@localhost"))
        }
        #expect(error.description.contains("wrong cookie"))
        #expect(acceptorLogs.contains("intruder@localhost does not know this node's cookie (wrong cookie)"))
        #expect(diallerLogs.contains("wrong cookie"))
        #expect(acceptor.connections.all().isEmpty)

        // The acceptor still serves a node with the right cookie.
        try await expectStillServes("acceptor@localhost", registrarPort: registrar.port, cookie: "right")

        service.cancel()
        for node in [acceptor, intruder] { await node.shutdown() }
        await registrar.shutdown()
    }

    @Test("a route cookie overrides the node cookie for the nodes it matches")
    func routeCookie() async throws {
        let registrar = try await startRegistrar()
        let routes = #"[{match: "^other@", resolver: native, cookie: {env: OTHER_COOKIE}}]"#
        let config = try nodeConfig("main@localhost", stacks: [("native", registrar.port)], routes: routes)
        let main = try await Node.start(config: config, environment: ["TEST_COOKIE": "mine", "OTHER_COOKIE": "theirs"], logger: .init(label: "main"))
        let other = try await startNode(try nodeConfig("other@localhost", stacks: [("native", registrar.port)]), cookie: "theirs")
        let echo = try other.spawn(name: "echo")
        let service = Task { try await EchoService.run(echo) }
        let me = try main.spawn()
        try await me.send(.tuple([.pid(me.pid), .atom("ok")]), to: .name("echo", on: "other@localhost"))
        #expect(try await me.receive(timeout: .seconds(10)).term() == .tuple([.atom("echo"), .atom("ok")]))
        service.cancel()
        await main.shutdown()
        await other.shutdown()
        await registrar.shutdown()
    }

    @Test("concurrent sends to a node that is still connecting share one dial and all arrive")
    func sharedDial() async throws {
        let registrar = try await startRegistrar()
        let a = try await startNode(try nodeConfig("a@localhost", stacks: [("native", registrar.port)]))
        let b = try await startNode(try nodeConfig("b@localhost", stacks: [("native", registrar.port)]))
        let sink = try b.spawn(name: "sink")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<50 {
                group.addTask {
                    let sender = try a.spawn()
                    try await sender.send(.int(index), to: .name("sink", on: "b@localhost"))
                }
            }
            try await group.waitForAll()
        }
        var received: Set<Term> = []
        for _ in 0..<50 { received.insert(try await sink.receive(timeout: .seconds(10)).term()) }
        #expect(received == Set((0..<50).map { Term.int($0) }))
        #expect(a.connections.all().count == 1)
        #expect(b.connections.all().count == 1)
        await a.shutdown()
        await b.shutdown()
        await registrar.shutdown()
    }

    @Test("two nodes dialling each other at once end with one connection, and messages flow both ways")
    func simultaneousConnect() async throws {
        let registrar = try await startRegistrar()
        let a = try await startNode(try nodeConfig("a@localhost", stacks: [("native", registrar.port)]))
        let b = try await startNode(try nodeConfig("b@localhost", stacks: [("native", registrar.port)]))
        let inboxA = try a.spawn(name: "inbox")
        let inboxB = try b.spawn(name: "inbox")
        async let fromA: Void = inboxA.send(.atom("from_a"), to: .name("inbox", on: "b@localhost"))
        async let fromB: Void = inboxB.send(.atom("from_b"), to: .name("inbox", on: "a@localhost"))
        _ = try await (fromA, fromB)
        #expect(try await inboxB.receive(timeout: .seconds(10)).term() == .atom("from_a"))
        #expect(try await inboxA.receive(timeout: .seconds(10)).term() == .atom("from_b"))
        #expect(a.connections.all().count == 1)
        #expect(b.connections.all().count == 1)
        await a.shutdown()
        await b.shutdown()
        await registrar.shutdown()
    }

    @Test("a message larger than the agreed maximum, or to a name longer than a frame carries, is refused with the sizes named, and later messages flow")
    func oversizedMessage() async throws {
        try await withSinkAndSender { a, sink, sender in
            try await sender.send(.atom("first"), to: .name("sink", on: "b@localhost"))
            let error = try await #require(throws: MessageTooLarge.self) {
                try await sender.send(.binary([UInt8](repeating: 1, count: 64 << 20)), to: .name("sink", on: "b@localhost"))
            }
            #expect(error.description.contains("exceeds the maximum of \(64 << 20) bytes"))
            let longName = String(repeating: "n", count: 256)
            let nameError = try await #require(throws: NameTooLong.self) {
                try await sender.send(.atom("lost"), to: .name(longName, on: "b@localhost"))
            }
            #expect(nameError.description.contains("takes 256 bytes of UTF-8; a native frame carries names of up to 255"))
            try await sender.send(.atom("after"), to: .name("sink", on: "b@localhost"))
            #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("first"))
            #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("after"))
        }
    }

    @Test("a process keeps sending to a node whose connection closed: its next message goes on a new connection")
    func sendsFollowANewConnection() async throws {
        try await withSinkAndSender { a, sink, sender in
            // The first send waits for the dial; the second finds the connection, which the
            // sender then remembers. Closing it must not leave the sender sending there.
            try await sender.send(.atom("one"), to: .name("sink", on: "b@localhost"))
            try await sender.send(.atom("one"), to: .name("sink", on: "b@localhost"))
            #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("one"))
            #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("one"))
            let first = try #require(a.connection(to: "b@localhost"))
            await first.closeAndWait()
            try await sender.send(.atom("two"), to: .name("sink", on: "b@localhost"))
            #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("two"))
            #expect(a.connection(to: "b@localhost") !== first)
        }
    }

    @Test("a message that a connection refuses because it just ended, before its end is announced, goes on the next connection, once")
    func refusedMessageFollowsTheNextConnection() async throws {
        try await withSinkAndSender { a, sink, sender in
            for _ in 0..<2 { try await sender.send(.atom("one"), to: .name("sink", on: "b@localhost")) }
            for _ in 0..<2 { #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("one")) }
            // Its outboxes refuse messages at once; the node hears of the end only once its
            // links' channels have closed, on their event loops. The send in between finds
            // the connection (the sender's cached route, or the table) and is refused.
            let first = try #require(a.connection(to: "b@localhost"))
            first.abort()
            try await sender.send(.atom("two"), to: .name("sink", on: "b@localhost"))
            #expect(try await sink.receive(timeout: .seconds(10)).term() == .atom("two"))
            #expect(a.connection(to: "b@localhost") !== first)
        }
    }

    @Test("a peer that sends garbage instead of a hello is disconnected, logged, and the node goes on")
    func garbagePeer() async throws {
        let registrar = try await startRegistrar()
        let logs = LogCapture()
        let node = try await startNode(try nodeConfig("target@localhost", stacks: [("native", registrar.port)]), logger: logs.logger)
        let address = try #require(node.listening["native"]?.first)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(to: address).get()
        try await channel.writeAndFlush(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: junction\r\n\r\n"))
        // The node hangs up on its own; this waits for that, not for a timer.
        try await channel.closeFuture.get()
        #expect(logs.contains("does not speak Junction's protocol"))

        let echo = try node.spawn(name: "echo")
        let service = Task { try await EchoService.run(echo) }
        try await expectStillServes("target@localhost", registrarPort: registrar.port)
        service.cancel()
        await node.shutdown()
        await registrar.shutdown()
    }

    @Test("messages to several names in one read each reach their own process, in order; one to no such name is dropped")
    func severalNamesInOneRead() async throws {
        let registrar = try await startRegistrar()
        let node = try await startNode(try nodeConfig("target@localhost", stacks: [("native", registrar.port)]))
        let first = try node.spawn(name: "first")
        let second = try node.spawn(name: "second")
        let address = try #require(node.listening["native"]?.first)
        let peer = try await RawPeer.connect(to: address, as: "mixer@localhost", target: "target@localhost", cookie: "test-cookie", flags: [])
        // One write, so the node reads these frames together: the delivery path reuses a
        // name's lookup for the frames after it, and must notice each change of name.
        let order = ["first", "first", "second", "nobody", "first", "second", "second", "first"]
        var bytes = ByteBuffer()
        for (index, name) in order.enumerated() {
            var body = ByteBuffer()
            body.writeInteger(UInt8(name.utf8.count))
            body.writeString(name)
            try ETF.encode(.tuple([.atom("n"), .int(index)]), into: &body)
            Frame.write(kind: NativeFrameKind.sendName, streamKey: 1, payload: body, into: &bytes)
        }
        try await peer.write(bytes)
        func indices(_ process: ProcessHandle, count: Int) async throws -> [Int] {
            var got: [Int] = []
            for _ in 0..<count {
                guard case .tuple(let elements) = try await process.receive(timeout: .seconds(10)).term(), case .int(let index) = elements[1] else {
                    Issue.record("not the message sent")
                    return got
                }
                got.append(index)
            }
            return got
        }
        #expect(try await indices(first, count: 4) == [0, 1, 4, 7])
        #expect(try await indices(second, count: 3) == [2, 5, 6])
        try? await peer.channel.close()
        await node.shutdown()
        await registrar.shutdown()
    }
}
