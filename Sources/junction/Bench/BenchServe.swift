import ArgumentParser
import Foundation
import Junction
import JunctionCore
import JunctionTerm
import JunctionTransport
import NIOPosix

/// The receiving node of `junction bench`, started by it as a second process: `echo`
/// plus `sink1 ... sinkN`, each counting messages (decoding every one) and answering
/// `{Pid, done}` with `{done, Count}`.
struct BenchServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "The receiving node that `junction bench` starts (not for direct use).", shouldDisplay: false)

    @OptionGroup var options: ConfigOptions

    @Option(help: "Node name.")
    var name: String

    @Option(help: "Number of sink processes.")
    var sinks = 2

    func run() async throws {
        let config = try options.load()
        var logger = options.logger("junction-bench-serve")
        if options.logLevel == .info { logger.logLevel = .warning }
        let group = BusyPoll.eventLoopGroup(threads: config.node.eventLoopThreads, window: config.node.busyPoll.timeAmount)
        let (node, (echo, sinkProcesses)) = try await Node.start(
            config: config, name: try parseNodeName(name), environment: ProcessInfo.processInfo.environment, group: group, logger: logger
        ) { node in (try node.spawn(name: "echo"), try (1...sinks).map { try node.spawn(name: "sink\($0)") }) }
        FileHandle.standardOutput.write(Data("ready\n".utf8))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask(executorPreference: node.executor) { try await EchoService.run(echo) }
            for sink in sinkProcesses { tasks.addTask(executorPreference: node.executor) { try await Self.count(sink) } }
            tasks.addTask { await Signals.wait(for: [SIGINT, SIGTERM]) }
            _ = try await tasks.next()
            tasks.cancelAll()
        }
        await node.shutdown()
        try await group.shutdownGracefully()
    }

    static func count(_ process: ProcessHandle) async throws {
        var count = 0
        while !Task.isCancelled {
            let term = try await process.receive().term()
            if case .tuple(let elements) = term, elements.count == 2, case .pid(let from) = elements[0], elements[1] == .atom("done") {
                try await process.send(.tuple([.atom("done"), .int(count)]), to: .pid(from))
                count = 0
            } else {
                count += 1
            }
        }
    }
}
