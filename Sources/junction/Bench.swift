import ArgumentParser
import Foundation
import Junction
import JunctionCore
import JunctionTerm
import NIOPosix

/// A simple throughput harness: one sender on a hidden node streams messages to the
/// `echo` process of a running node, then waits for the reply to a final `{Pid, done}`.
/// The link is FIFO, so that reply means every message before it was delivered and
/// decoded by `echo`.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure one-way message throughput to a running node's echo process.")

    @OptionGroup var options: ConfigOptions

    @Argument(help: "The node running `junction run` (name@host).")
    var node: String

    @Option(help: "Messages per run.")
    var count = 1_000_000

    @Option(help: "Timed runs (after one untimed warm-up run of a tenth of the count).")
    var runs = 3

    @Option(help: "Payload: small ({m, I}) or 1k ({m, <<1024 bytes>>}).")
    var payload: PayloadKind = .small

    enum PayloadKind: String, ExpressibleByArgument, CaseIterable { case small, `1k` }

    func run() async throws {
        let config = try options.load()
        let target = try parseNodeName(node)
        var logger = options.logger("junction-bench")
        if options.logLevel == .info { logger.logLevel = .warning }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let client = try await Node.start(
            config: config, name: try NodeName("bench-\(UInt32.random(in: 0...UInt32.max))@\(target.host)"), hidden: true,
            environment: ProcessInfo.processInfo.environment, group: group, logger: logger)
        let me = try client.spawn()
        let blob = Term.binary([UInt8](repeating: 0x5A, count: 1024))
        let destination = Destination.name("echo", on: target)

        func once(_ count: Int, label: String) async throws -> Double {
            let start = ContinuousClock.now
            var lastReport = start
            for index in 0..<count {
                try await me.send(.tuple([.atom("m"), payload == .small ? .int(index) : blob]), to: destination)
                if index & 0x3FFF == 0, ContinuousClock.now - lastReport > .seconds(1) {
                    lastReport = .now
                    let elapsed = (ContinuousClock.now - start).seconds
                    FileHandle.standardError.write(Data("\r\(label): \(index) sent, \(Int(Double(index) / elapsed)) msgs/s   ".utf8))
                }
            }
            try await me.send(.tuple([.pid(me.pid), .atom("done")]), to: destination)
            _ = try await me.receive(timeout: .seconds(120))
            let rate = Double(count) / (ContinuousClock.now - start).seconds
            FileHandle.standardError.write(Data("\r\(label): \(count) messages, \(Int(rate)) msgs/s           \n".utf8))
            return rate
        }

        _ = try await once(max(1, count / 10), label: "warm-up")
        var rates: [Double] = []
        for run in 1...runs { rates.append(try await once(count, label: "run \(run)/\(runs)")) }
        let median = rates.sorted()[rates.count / 2]
        print("| payload | messages/run | runs | median msgs/s | min | max |")
        print("| --- | --- | --- | --- | --- | --- |")
        print("| \(payload.rawValue) | \(count) | \(runs) | \(Int(median)) | \(Int(rates.min()!)) | \(Int(rates.max()!)) |")
        await client.shutdown()
        try await group.shutdownGracefully()
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
