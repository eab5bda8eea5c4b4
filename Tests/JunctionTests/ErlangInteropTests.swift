import Foundation
import Junction
import JunctionCore
import JunctionErlang
import JunctionNative
import JunctionTerm
import Logging
import NIOCore
import NIOPosix
import Testing

/// A Junction node with a native stack (the default) and an `erlang` stack whose epmd
/// port is `epmdPort`; routes send `e*@localhost` names over the Erlang stack with the
/// Erlang cluster's own cookie (from `ERLANG_COOKIE`; see `Gateway`).
func gatewayConfig(
    _ name: String, registrarPort: Int, epmdPort: Int, netTickTime: String = "60s", reconnect: String = "{}", stalledAfter: String = "5s",
    bridges: String = "[]"
) throws -> JunctionConfig {
    try ConfigLoader.load(yaml: """
        node:
          name: \(name)
          cookie: {env: TEST_COOKIE}
        stacks:
          - name: native
            kind: native
            registrar: {host: 127.0.0.1, port: \(registrarPort)}
          - name: otp
            kind: erlang
            acceptors: [{host: 127.0.0.1, port: 0}]
            handshakeTimeout: 5s
            erlang: {epmdPort: \(epmdPort), netTickTime: \(netTickTime)}
        routes:
          - match: "^e[0-9a-z_]*@localhost$"
            resolver: otp
            cookie: {env: ERLANG_COOKIE}
        limits: {reconnect: \(reconnect), stalledAfter: \(stalledAfter)}
        bridges: \(bridges)
        """)
}

/// A node under test with both stacks: its own registrar, an epmd port nothing else
/// uses, native cookie `test-cookie` and Erlang route cookie `erlcookie`.
struct Gateway {
    let node: Node
    let registrar: EmbeddedRegistrarServer
    let epmd: EpmdServer?
    let epmdPort: Int

    /// With `epmdPort`, the node uses the epmd there. Otherwise the gateway starts an
    /// embedded epmd on a kernel-picked port for it, or, with `nodeRunsEpmd`, leaves a
    /// free port for the node to start its own (a port released and taken again, which
    /// another test could take in between: only the test of that start uses it).
    static func start(
        _ name: String, epmdPort: Int? = nil, nodeRunsEpmd: Bool = false, netTickTime: String = "60s", reconnect: String = "{}",
        stalledAfter: String = "5s", bridges: String = "[]", logger: Logger = quietLogger
    ) async throws -> Gateway {
        let registrar = try await startRegistrar()
        var epmd: EpmdServer?
        let port: Int
        if let epmdPort {
            port = epmdPort
        } else if nodeRunsEpmd {
            port = try await Erl.freePort()
        } else {
            epmd = try await EpmdServer.start(port: 0, group: MultiThreadedEventLoopGroup.singleton, logger: quietLogger)
            port = epmd!.address!.port!
        }
        let config = try gatewayConfig(
            name, registrarPort: registrar.port, epmdPort: port, netTickTime: netTickTime, reconnect: reconnect, stalledAfter: stalledAfter, bridges: bridges)
        let node = try await Node.start(config: config, environment: ["TEST_COOKIE": "test-cookie", "ERLANG_COOKIE": "erlcookie"], logger: logger)
        return Gateway(node: node, registrar: registrar, epmd: epmd, epmdPort: port)
    }

    func stop() async {
        await node.shutdown()
        await registrar.shutdown()
        await epmd?.shutdown()
    }
}

@Suite("Erlang interop", .timeLimit(.minutes(1)))
struct ErlangInteropTests {
    /// Answers `gen_server` calls with `{echo, Request}` (`pid` with its pid) and
    /// `{From, big, Binary}` with `{big_reply, Size, Binary}`; exits on `stop`.
    static func serve(_ process: ProcessHandle) async {
        while let message = try? await process.receive(), let term = try? message.term() {
            if term == .atom("stop") {
                process.exit()
                return
            } else if let call = GenCall(term) {
                let reply: Term = call.request == .atom("pid") ? .pid(process.pid) : .tuple([.atom("echo"), call.request])
                try? await process.reply(to: call, with: reply)
            } else if case .tuple(let fields) = term, fields.count == 3, case .pid(let from) = fields[0], fields[1] == .atom("big"), case .binary(let bytes) = fields[2] {
                try? await process.send(.tuple([.atom("big_reply"), .int(bytes.count), .binary(bytes)]), to: .pid(from))
            }
        }
    }

    @Test("OTP nodes register with the embedded epmd and find each other and Junction through it; they ping Junction, see it in nodes(), gen_server:call its echo (noproc for a missing name) and trade 1 MiB binaries in fragments")
    func otpCallsJunction() async throws {
        let gateway = try await Gateway.start("jx@localhost", nodeRunsEpmd: true)
        defer { Task { await gateway.stop() } }
        let (node, epmdPort) = (gateway.node, gateway.epmdPort)
        #expect(node.erlangStack("otp")?.runsEpmd == true, "nothing listened on the epmd port, so the node runs the embedded epmd")
        #expect(node.creation == node.erlangStack("otp")?.creation)
        let echo = try node.spawn(name: "echo")
        let svc = try node.spawn(name: "svc")
        let servers = [Task { try await EchoService.run(echo) }, Task { await Self.serve(svc) }]
        defer { for server in servers { server.cancel() } }
        let other = try Erl.node("e0@localhost", cookie: "erlcookie", epmdPort: epmdPort)
        defer { other.signal(SIGKILL) }
        try await other.waitForLine(containing: "ready")

        let printed = try await Erl.run("e1@localhost", cookie: "erlcookie", epmdPort: epmdPort, """
            J = 'jx@localhost',
            Ping = net_adm:ping(J),
            Other = net_adm:ping('e0@localhost'),
            Names = lists:sort([N || {N, _} <- element(2, net_adm:names())]),
            Call = gen_server:call({echo, J}, hello),
            NoProc = element(1, element(2, catch gen_server:call({nobody, J}, hi, 2000))),
            Big = crypto:strong_rand_bytes(1048576),
            {svc, J} ! {self(), big, Big},
            Back = receive {big_reply, Size, Bin} -> {Size, Bin =:= Big} after 10000 -> timeout end,
            io:format("ping=~w other=~w names=~p call=~w noproc=~w big=~w visible=~w~n", [Ping, Other, Names, Call, NoProc, Back, lists:member(J, nodes())])
            """)
        #expect(printed.contains("ping=pong other=pong"), "\(printed)")
        #expect(printed.contains("names=[\"e0\",\"e1\",\"jx\"]"), "\(printed)")
        #expect(printed.contains("call={echo,hello}"), "\(printed)")
        #expect(printed.contains("noproc=noproc"), "\(printed)")
        #expect(printed.contains("big={1048576,true}"), "\(printed)")
        #expect(printed.contains("visible=true"), "\(printed)")
    }

    @Test("100,000 messages from a Junction process arrive at an OTP process in order")
    func orderedStream() async throws {
        let gateway = try await Gateway.start("jo@localhost")
        defer { Task { await gateway.stop() } }
        let erl = try Erl.node("e7@localhost", cookie: "erlcookie", epmdPort: gateway.epmdPort, then: """
            Count = fun Loop(N, InOrder) ->
                receive
                    {seq, I} -> Loop(N + 1, InOrder andalso I =:= N + 1);
                    {From, done} -> From ! {count, N, InOrder}, Loop(0, true)
                end
            end,
            register(counter, spawn(fun() -> Count(0, true) end)),
            io:format("counter up~n"),
            receive after infinity -> ok end
            """)
        defer { erl.signal(SIGKILL) }
        try await erl.waitForLine(containing: "counter up")
        let me = try gateway.node.spawn()
        for i in 1...100_000 { try await me.send(.tuple([.atom("seq"), .int(i)]), to: .name("counter", on: "e7@localhost")) }
        try await me.send(.tuple([.pid(me.pid), .atom("done")]), to: .name("counter", on: "e7@localhost"))
        #expect(try await me.receive(timeout: .seconds(60)).term() == .tuple([.atom("count"), .int(100_000), .atom("true")]))
    }

    @Test("an idle connection to an OTP node survives several tick intervals; killing the node is noticed")
    func idleAndKilled() async throws {
        let gateway = try await Gateway.start("ji@localhost", netTickTime: "1s")
        defer { Task { await gateway.stop() } }
        let erl = try Erl.node("e8@localhost", cookie: "erlcookie", epmdPort: gateway.epmdPort, then: """
            true = net_kernel:connect_node('ji@localhost'),
            monitor_node('ji@localhost', true),
            Idle = receive {nodedown, _} -> lost after 4000 -> survived end,
            io:format("idle=~p~n", [Idle]),
            receive after infinity -> ok end
            """, extra: ["-kernel", "net_ticktime", "1"])
        defer { erl.signal(SIGKILL) }
        try await erl.waitForLine(containing: "idle=")
        #expect(erl.standardOutput.contains("idle=survived"), "\(erl.standardOutput)")
        let connection = try #require(gateway.node.erlangConnection(to: "e8@localhost"))
        await erl.stop(signal: SIGKILL)
        await connection.waitUntilClosed()
        #expect(gateway.node.erlangConnection(to: "e8@localhost") == nil)
    }

    @Test("a Junction process reaches a registered process on an OTP node through the route's epmd resolver and cookie, and gets its reply")
    func junctionSendsToOTP() async throws {
        let (epmd, epmdPort) = try await Erl.epmd()
        defer { epmd.signal(SIGKILL) }
        let erl = try Erl.node("e2@localhost", cookie: "erlcookie", epmdPort: epmdPort, then: """
            register(echo, spawn(fun Loop() -> receive {From, Msg} -> From ! {echo, Msg}, Loop() end end)),
            io:format("echo up~n"),
            receive after infinity -> ok end
            """)
        defer { erl.signal(SIGKILL) }
        try await erl.waitForLine(containing: "echo up")

        let gateway = try await Gateway.start("jy@localhost", epmdPort: epmdPort)
        defer { Task { await gateway.stop() } }
        let node = gateway.node
        #expect(node.erlangStack("otp")?.runsEpmd == false, "a real epmd runs, so the node registers with it")
        let me = try node.spawn()
        try await me.send(.tuple([.pid(me.pid), .atom("hello")]), to: .name("echo", on: "e2@localhost"))
        #expect(try await me.receive(timeout: .seconds(10)).term() == .tuple([.atom("echo"), .atom("hello")]))
        let connection = try #require(node.erlangConnection(to: "e2@localhost"))
        #expect(connection.direction == .outgoing && connection.negotiated.flags.contains(.fragments))
    }

    @Test("a wrong cookie is refused in both directions with a log line saying so, and the node keeps serving Erlang peers")
    func wrongCookie() async throws {
        let logs = LogCapture()
        let gateway = try await Gateway.start("jz@localhost", logger: logs.logger)
        defer { Task { await gateway.stop() } }
        let epmdPort = gateway.epmdPort
        // In: an Erlang node with another cookie.
        let bad = try await Erl.run("e3@localhost", cookie: "wrong", epmdPort: epmdPort, "io:format(\"ping=~p~n\", [net_adm:ping('jz@localhost')])")
        #expect(bad.contains("ping=pang"), "\(bad)")
        #expect(logs.contains("e3@localhost proved a different cookie"), "\(logs.all)")
        // Out: dialling an Erlang node whose cookie differs from the route's.
        let stranger = try Erl.node("ew@localhost", cookie: "other", epmdPort: epmdPort)
        defer { stranger.signal(SIGKILL) }
        try await stranger.waitForLine(containing: "ready")
        let me = try gateway.node.spawn()
        let error = await #expect(throws: DialError.self) { try await me.send(.atom("hi"), to: .name("echo", on: "ew@localhost")) }
        #expect(error?.description.contains("wrong cookie") == true, "\(String(describing: error))")
        #expect(logs.contains("a wrong cookie"), "\(logs.all)")

        let good = try await Erl.run("e4@localhost", cookie: "erlcookie", epmdPort: epmdPort, "io:format(\"ping=~p~n\", [net_adm:ping('jz@localhost')])")
        #expect(good.contains("ping=pong"), "\(good)")
    }

    @Test("malformed and oversized packets close only their connection, with the reason logged; the node keeps serving Erlang peers")
    func badPackets() async throws {
        let logs = LogCapture()
        let gateway = try await Gateway.start("jb@localhost", logger: logs.logger)
        defer { Task { await gateway.stop() } }
        let address = try #require(gateway.node.listening["otp"]?.first)

        let garbage = try await RawErlangPeer.connect(to: address, as: "eraw@localhost", target: "jb@localhost", cookie: "erlcookie")
        try await garbage.writePacket([112, 131, 104, 2, 97])
        _ = await garbage.bytesUntilClosed()
        let huge = try await RawErlangPeer.connect(to: address, as: "eraw2@localhost", target: "jb@localhost", cookie: "erlcookie")
        var header = ByteBuffer()
        header.writeInteger(UInt32(1 << 30))
        try await huge.channel.writeAndFlush(header)
        _ = await huge.bytesUntilClosed()
        #expect(logs.contains("malformed"), "\(logs.all)")
        #expect(logs.contains("over the maximum message size"), "\(logs.all)")

        let good = try await Erl.run("e5@localhost", cookie: "erlcookie", epmdPort: gateway.epmdPort, "io:format(\"ping=~p~n\", [net_adm:ping('jb@localhost')])")
        #expect(good.contains("ping=pong"), "\(good)")
    }

    @Test("ticks: the node answers a tick, ticks an idle peer, and drops a peer silent for the tick time")
    func ticks() async throws {
        let logs = LogCapture()
        let gateway = try await Gateway.start("jt@localhost", netTickTime: "1s", logger: logs.logger)
        defer { Task { await gateway.stop() } }
        let address = try #require(gateway.node.listening["otp"]?.first)
        let peer = try await RawErlangPeer.connect(to: address, as: "etick@localhost", target: "jt@localhost", cookie: "erlcookie", early: [0, 0, 0, 0])
        // The answer to our tick, then the node's own ticks while we stay silent, then
        // the close after a second without a byte from us.
        let bytes = await peer.bytesUntilClosed()
        #expect(bytes.count >= 8 && bytes.allSatisfy { $0 == 0 }, "\(bytes)")
        #expect(logs.contains("sent nothing (not even a tick) for 1 s"), "\(logs.all)")
    }

    @Test("an OTP process monitoring or linked to a Junction process hears when it exits")
    func monitorsAndLinks() async throws {
        let gateway = try await Gateway.start("jm@localhost")
        defer { Task { await gateway.stop() } }
        let (node, epmdPort) = (gateway.node, gateway.epmdPort)
        let monitored = try node.spawn(name: "monitored")
        let linked = try node.spawn(name: "linked")
        let servers = [Task { await Self.serve(monitored) }, Task { await Self.serve(linked) }]
        defer { for server in servers { server.cancel() } }

        let printed = try await Erl.run("e6@localhost", cookie: "erlcookie", epmdPort: epmdPort, """
            J = 'jm@localhost',
            pong = net_adm:ping(J),
            Ref = erlang:monitor(process, {monitored, J}),
            {monitored, J} ! stop,
            Down = receive {'DOWN', Ref, process, Obj, Why} -> {Obj, Why} after 5000 -> timeout end,
            process_flag(trap_exit, true),
            Pid = gen_server:call({linked, J}, pid),
            link(Pid),
            Pid ! stop,
            Exit = receive {'EXIT', Pid, How} -> How after 5000 -> timeout end,
            io:format("down=~w exit=~w~n", [Down, Exit])
            """)
        #expect(printed.contains("down={{monitored,jm@localhost},normal}"), "\(printed)")
        #expect(printed.contains("exit=normal"), "\(printed)")
    }

    @Test("a peer that stops reading holds senders back and is reported stalled; they resume, losing nothing, when it reads again")
    func backpressure() async throws {
        let gateway = try await Gateway.start("jp@localhost", stalledAfter: "100ms")
        defer { Task { await gateway.stop() } }
        let node = gateway.node
        let address = try #require(node.listening["otp"]?.first)
        let peer = try await RawErlangPeer.connect(to: address, as: "eslow@localhost", target: "jp@localhost", cookie: "erlcookie")
        try await peer.channel.setOption(.autoRead, value: false)
        var follower = StallFollower(node: node, peer: "eslow@localhost")
        let target = Pid(node: "eslow@localhost", id: 1, creation: 1)
        let me = try node.spawn()
        let count = 20_000
        let blob = Term.binary([UInt8](repeating: 7, count: 1024))
        let sender = Task {
            for i in 0..<count { try await me.send(.tuple([.int(i), blob]), to: .pid(target)) }
        }
        let stall = try #require(await follower.stall())
        #expect(stall.waiting == 1 && stall.row.queued == 1, "\(stall)")

        try await peer.channel.setOption(.autoRead, value: true)
        peer.channel.read()
        try await sender.value
        let stalledFor = try #require(await follower.resume())
        #expect(stalledFor >= .milliseconds(100))
        let after = try #require(node.connectionStatuses().first { $0.peer == "eslow@localhost" })
        #expect(after.state == "up" && after.queued == 0, "\(after)")
        // Every message reaches the peer: count what it reads until all the payload is there.
        var received = 0
        for await bytes in peer.received {
            received += bytes.readableBytes
            if received >= count * 1024 { break }
        }
        #expect(received >= count * 1024)
    }

    @Test("access rules hold on the Erlang stack: a blocked address is closed before any byte; an allowed system from it gets in; a blocked system is refused with not_allowed")
    func accessRules() async throws {
        let gateway = try await Gateway.start("ja@localhost")
        defer { Task { await gateway.stop() } }
        let address = try #require(gateway.node.listening["otp"]?.first)
        await gateway.node.request(.blockIpNet(IPNetwork("127.0.0.0/24")!))
        let refused = try await RawPeer.open(to: address, from: "127.0.0.2")
        var bytes = 0
        for await chunk in refused.received { bytes += chunk.readableBytes }
        #expect(bytes == 0)

        await gateway.node.request(.allowSystem("eallowed@localhost"))
        let allowed = try await RawErlangPeer.connect(to: address, as: "eallowed@localhost", target: "ja@localhost", cookie: "erlcookie")
        allowed.channel.close(promise: nil)
        await gateway.node.request(.blockSystem("eallowed@localhost"))
        await gateway.node.request(.allowSystem("eother@localhost"))
        let error = await #expect(throws: ErlangHandshakeError.self) {
            try await RawErlangPeer.connect(to: address, as: "eallowed@localhost", target: "ja@localhost", cookie: "erlcookie")
        }
        #expect(error?.reason == .notAllowed)
    }
}
