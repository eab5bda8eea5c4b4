import Foundation
import JunctionCore
import JunctionNative
import JunctionTerm
import Logging
import NIOPosix
import Testing

@testable import Junction

/// A free loopback port for a registrar that the nodes themselves must start.
func freeRegistrarPort() async throws -> Int {
    try await Erl.freePort()
}

@Suite("Embedded registrar", .timeLimit(.minutes(1)))
struct RegistrarTests {
    @Test("the first node starts the registrar; when it exits, another node takes over and names resolve again")
    func takeover() async throws {
        let port = try await freeRegistrarPort()
        let first = try await startNode(try nodeConfig("first@localhost", stacks: [("native", port)]))
        #expect(first.registrar(stack: "native")?.isServer == true)
        let second = try await startNode(try nodeConfig("second@localhost", stacks: [("native", port)]))
        let registrar = try #require(second.registrar(stack: "native"))
        #expect(registrar.isServer == false)
        var events = registrar.events.makeAsyncIterator()
        #expect(await events.next() == .registered(server: false))

        await first.shutdown()
        #expect(await events.next() == .lost)
        #expect(await events.next() == .registered(server: true))

        // A new node registers with the new server and reaches `second` through it.
        let third = try await startNode(try nodeConfig("third@localhost", stacks: [("native", port)]))
        let echo = try second.spawn(name: "echo")
        let service = Task { try await EchoService.run(echo) }
        let me = try third.spawn()
        try await me.send(.tuple([.pid(me.pid), .atom("after_takeover")]), to: .name("echo", on: "second@localhost"))
        #expect(try await me.receive(timeout: .seconds(10)).term() == .tuple([.atom("echo"), .atom("after_takeover")]))
        service.cancel()
        await third.shutdown()
        await second.shutdown()
    }

    @Test("a second node with a name already registered is refused with a clear error")
    func duplicateName() async throws {
        let registrar = try await startRegistrar()
        let first = try await startNode(try nodeConfig("twin@localhost", stacks: [("native", registrar.port)]))
        let error = try await #require(throws: RegistrarError.self) {
            _ = try await startNode(try nodeConfig("twin@localhost", stacks: [("native", registrar.port)]))
        }
        #expect(error.description.contains("the name 'twin' is already registered on this host"))
        // The name is free again once its owner is gone.
        await first.shutdown()
        let again = try await startNode(try nodeConfig("twin@localhost", stacks: [("native", registrar.port)]))
        await again.shutdown()
        await registrar.shutdown()
    }

    @Test("a node whose registrar port is held by something that accepts and never answers does not start, and says so")
    func silentRegistrarPort() async throws {
        // Accepts connections and reads nothing: a hung registrar, or another program.
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        defer { silent.close(promise: nil) }
        let error = try await #require(throws: RegistrarError.self) {
            _ = try await startNode(try nodeConfig("hush@localhost", stacks: [("native", silent.localAddress!.port!)]))
        }
        #expect(error.description.contains("did not answer within 5000 ms; is something else listening on its port?"), "\(error)")
    }
}
