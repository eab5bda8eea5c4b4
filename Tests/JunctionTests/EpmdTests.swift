import Foundation
import JunctionErlang
import NIOPosix
import Testing

@Suite("epmd")
struct EpmdTests {
    let group = MultiThreadedEventLoopGroup.singleton

    /// Resolves until `alive` is gone: unregistration happens when epmd sees the
    /// registering connection close, which a request made after that sees.
    func expectUnregistered(_ alive: String, client: EpmdClient) async throws {
        for _ in 0..<1000 where try await client.resolve(alive) != nil { await Task.yield() }
        #expect(try await client.resolve(alive) == nil, "'\(alive)' is still registered")
    }

    @Test("the embedded epmd serves real erl nodes: they register, resolve through it and list its names; names are unique and end with their connection")
    func embeddedServesErl() async throws {
        let server = try await EpmdServer.start(port: 0, group: group, logger: quietLogger)
        defer { Task { await server.shutdown() } }
        let port = try #require(server.address?.port)
        let client = EpmdClient(port: port, group: group)

        let erl = try Erl.node("epmd_a@localhost", cookie: "c", epmdPort: port)
        defer { erl.signal(SIGKILL) }
        try await erl.waitForLine(containing: "ready")
        let entry = try #require(try await client.resolve("epmd_a"))
        #expect(entry.port > 0 && entry.highestVersion == 6 && entry.lowestVersion == 5 && entry.nodeType == EpmdProtocol.Entry.normalNode)

        let registration = try await client.register(EpmdProtocol.Entry(alive: "jx", port: 12345))
        #expect(registration.creation != 0)
        let duplicate = await #expect(throws: EpmdProtocol.Failure.self) { try await client.register(EpmdProtocol.Entry(alive: "jx", port: 1)) }
        #expect(duplicate?.description.contains("already registered") == true)

        // A real node resolves our registration and lists both names.
        let printed = try await Erl.run(
            "epmd_b@localhost", cookie: "c", epmdPort: port,
            "io:format(\"~p ~p~n\", [erl_epmd:port_please(\"jx\", {127,0,0,1}), lists:sort(element(2, net_adm:names()))])")
        #expect(printed.contains("{port,12345,6}"), "\(printed)")
        #expect(printed.contains("{\"epmd_a\","), "\(printed)")
        #expect(printed.contains("{\"jx\",12345}"), "\(printed)")
        #expect(try await client.names().map(\.name).contains("epmd_a"))

        await registration.close()
        try await expectUnregistered("jx", client: client)
        await erl.stop(signal: SIGKILL)
        try await expectUnregistered("epmd_a", client: client)
        // A name freed by its connection can be registered again, with a new creation.
        let again = try await client.register(EpmdProtocol.Entry(alive: "jx", port: 12346))
        #expect(again.creation != registration.creation)
        await again.close()
    }

    @Test("the client registers with, resolves through and lists a real epmd")
    func clientWithRealEpmd() async throws {
        let (epmd, port) = try await Erl.epmd()
        defer { epmd.signal(SIGKILL) }
        let client = EpmdClient(port: port, group: group)
        let registration = try await client.register(EpmdProtocol.Entry(alive: "jy", port: 23456, hidden: true))
        #expect(registration.creation != 0)
        let entry = try #require(try await client.resolve("jy"))
        #expect(entry.port == 23456 && entry.nodeType == EpmdProtocol.Entry.hiddenNode && entry.highestVersion == 6)
        #expect(try await client.names().contains { $0.name == "jy" && $0.port == 23456 })
        #expect(try await client.resolve("nobody") == nil)
        await registration.close()
        try await expectUnregistered("jy", client: client)
    }
}
