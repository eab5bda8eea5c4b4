import Foundation
import JunctionTerm

/// The standing reference: two Erlang/OTP nodes (`erl` from erlang-nox) doing the same
/// work over Erlang distribution, on loopback.
struct ErlangReference {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    let cookie = "junction-bench-\(UInt32.random(in: 0...UInt32.max))"
    let serverName = "junction_ref_\(UInt32.random(in: 0...UInt32.max))@127.0.0.1"
    let recordsFile: URL
    let server: Process
    let serverPID: Int32

    /// Starts the receiving OTP node with `echo` and `sink1 ... sinkN`.
    init(sinks: Int, records: [[UInt8]], directory: URL) throws {
        recordsFile = directory.appendingPathComponent("records.etf")
        try Data(try ETF.encode(.list(records.map { .binary($0) }))).write(to: recordsFile)
        let code = """
            Sink = fun Loop(C) -> receive {From, done} when is_pid(From) -> From ! {done, C}, Loop(0); _ -> Loop(C + 1) end end,
            [register(list_to_atom("sink" ++ integer_to_list(I)), spawn(fun() -> Sink(0) end)) || I <- lists:seq(1, \(sinks))],
            register(echo, spawn(fun Echo() -> receive {From, Msg} when is_pid(From) -> From ! {echo, Msg}, Echo(); _ -> Echo() end end)),
            io:format("ready~n").
            """
        server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = ["erl", "-name", serverName, "-setcookie", cookie, "-noshell", "-eval", code]
        let output = Pipe()
        server.standardOutput = output
        server.standardError = FileHandle.nullDevice
        do {
            try server.run()
        } catch {
            throw Failure(description: "cannot start erl (install erlang-nox, or pass --no-erlang): \(error)")
        }
        serverPID = server.processIdentifier
        var seen = Data()
        while !String(decoding: seen, as: UTF8.self).contains("ready") {
            let chunk = output.fileHandleForReading.availableData
            guard !chunk.isEmpty else { throw Failure(description: "the reference erl node exited before it was ready") }
            seen += chunk
        }
    }

    /// Stops the reference node by its pid. SIGKILL: a `-noshell` node started from a
    /// `Process` does not act on SIGTERM, and it holds nothing worth a graceful stop.
    func stop() {
        if server.isRunning { kill(serverPID, SIGKILL) }
        server.waitUntilExit()
    }

    /// One timed run (after a warm-up of a tenth) of `count` messages from `senders`
    /// processes to the sinks on `target` (the reference server by default); the
    /// server's CPU is read from /proc around the whole client.
    func throughput(_ scenario: BenchScenario, count: Int, target: String? = nil) throws -> (rate: Double, cpuPerMessage: Double, wireBytes: Double) {
        let kind: String
        switch scenario.payload {
        case .small: kind = "small"
        case .kib: kind = "kib"
        case .json: kind = "json"
        case .jsonSame: kind = "json_same"
        }
        let code = """
            Server = '\(target ?? serverName)', S = \(scenario.senders), C = \(count),
            true = net_kernel:connect_node(Server),
            {ok, Bin} = file:read_file("\(recordsFile.path)"), Records = list_to_tuple(binary_to_term(Bin)), NR = tuple_size(Records),
            Blob = binary:copy(<<90>>, 1024),
            Msg = fun(I) -> case \(kind) of small -> {m, I}; kib -> {m, Blob}; json -> {m, element(I rem NR + 1, Records)}; json_same -> {m, element(1, Records)} end end,
            Wire = fun() -> case erlang:system_info(dist_ctrl) of [{_, P}] when is_port(P) -> {ok, [{send_oct, N}]} = inet:getstat(P, [send_oct]), N; _ -> 0 end end,
            Run = fun(Count) ->
                Self = self(),
                T0 = erlang:monotonic_time(nanosecond),
                Pids = [spawn_link(fun() ->
                            Sink = {list_to_atom("sink" ++ integer_to_list(K)), Server},
                            lists:foreach(fun(I) -> Sink ! Msg(I) end, lists:seq(1, Count div S)),
                            Sink ! {self(), done}, receive {done, _} -> ok end, Self ! {finished, self()} end) || K <- lists:seq(1, S)],
                [receive {finished, P} -> ok end || P <- Pids],
                erlang:monotonic_time(nanosecond) - T0
            end,
            Run(C div 10),
            W0 = Wire(), {Cpu0, _} = statistics(runtime),
            Ns = Run(C),
            {Cpu1, _} = statistics(runtime), W1 = Wire(),
            io:format("RESULT ~p ~p ~p~n", [C / (Ns / 1.0e9), Cpu1 - Cpu0, W1 - W0]),
            halt().
            """
        let serverCPU0 = ProcessCPU.seconds(serverPID)
        let line = try client(code, expecting: "RESULT")
        let serverCPU = ProcessCPU.seconds(serverPID) - serverCPU0
        let fields = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard fields.count == 3 else { throw Failure(description: "unexpected output from the erl client: \(line)") }
        let perMessage = fields[1] / 1000 / Double(count) + serverCPU / Double(count + count / 10)
        return (fields[0], perMessage, fields[2] / Double(count))
    }

    /// Round trips to `echo`: `{self(), I}` answered by `{echo, I}`.
    func latency(calls: Int) throws -> LatencyResult {
        let code = """
            Server = '\(serverName)', true = net_kernel:connect_node(Server), Echo = {echo, Server},
            Lat = fun(N) -> [begin T = erlang:monotonic_time(nanosecond), Echo ! {self(), I}, receive {echo, I} -> ok end,
                             erlang:monotonic_time(nanosecond) - T end || I <- lists:seq(1, N)] end,
            Lat(1000), L = lists:sort(Lat(\(calls))), Len = length(L),
            P = fun(Q) -> lists:nth(max(1, min(Len, ceil(Q * Len))), L) / 1000 end,
            io:format("LAT ~p ~p ~p ~p~n", [P(0.5), P(0.9), P(0.99), lists:last(L) / 1000]),
            halt().
            """
        let fields = try client(code, expecting: "LAT").split(separator: " ").dropFirst().compactMap { Double($0) }
        guard fields.count == 4 else { throw Failure(description: "unexpected latency output from the erl client") }
        return LatencyResult(calls: calls, p50: fields[0], p90: fields[1], p99: fields[2], max: fields[3])
    }

    func client(_ code: String, expecting prefix: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["erl", "-name", "junction_ref_client_\(UInt32.random(in: 0...UInt32.max))@127.0.0.1", "-setcookie", cookie, "-noshell", "-eval", code]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) else {
            throw Failure(description: "the erl client failed: \(text.prefix(500))")
        }
        return String(line)
    }
}
