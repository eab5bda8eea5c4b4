import Foundation
import NIOPosix
import JunctionErlang
import Synchronization
import Testing

/// Runs the built `junction` executable as a user would: two `junction run` nodes and
/// `junction send ... --call` between them.
@Suite("junction command line")
struct CommandLineTests {
    /// The `junction` binary next to the test bundle (both are build products).
    static var binary: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("junction")
    }

    @Test("two `junction run` nodes and `junction send b echo hello --call` print {echo,hello}")
    func runAndSend() async throws {
        // A registrar on a kernel-picked port the test holds (a released free port could
        // be taken by another test before the node binds it); RegistrarTests covers a
        // node starting its own.
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let registrarPort = registrar.port
        let epmd = try await EpmdServer.start(port: 0, group: MultiThreadedEventLoopGroup.singleton, logger: quietLogger)
        defer { Task { await epmd.shutdown() } }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("junction-cli-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let defaultConfig = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Config/junction.yaml")
        let config = directory.appendingPathComponent("junction.yaml")
        try String(contentsOf: defaultConfig, encoding: .utf8).replacingOccurrences(of: "port: 4499", with: "port: \(registrarPort)")
            .replacingOccurrences(of: "epmdPort: 4369", with: "epmdPort: \(epmd.address!.port!)")
            .write(to: config, atomically: true, encoding: .utf8)
        let environment = ["JUNCTION_COOKIE": "cli-test", "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"]

        let a = try NodeProcess(binary: Self.binary, arguments: ["run", "--config", config.path, "--name", "cli-a@localhost"], environment: environment)
        defer { a.signal() }
        try await a.waitForLine(containing: "is up")
        let b = try NodeProcess(binary: Self.binary, arguments: ["run", "--config", config.path, "--name", "cli-b@localhost"], environment: environment)
        defer { b.signal() }
        try await b.waitForLine(containing: "is up")
        #expect(b.output.contains("stack native (native) listens on 127.0.0.1:"))
        #expect(b.output.contains("registered as 'cli-b' with the registrar at 127.0.0.1:\(registrarPort)"))

        let send = try NodeProcess(
            binary: Self.binary, arguments: ["send", "--config", config.path, "cli-b@localhost", "echo", "hello", "--call"], environment: environment)
        #expect(await send.exitStatus() == 0)
        #expect(send.standardOutput == "{echo,hello}\n")

        let routes = try NodeProcess(
            binary: Self.binary, arguments: ["routes", "--config", config.path, "cli-b@localhost", "--resolve"], environment: environment)
        #expect(await routes.exitStatus() == 0)
        #expect(routes.standardOutput.contains("1. no static route matches: default resolver (stack native)"), "\(routes.standardOutput)")
        #expect(
            routes.standardOutput.contains("1. default resolver: registrar at 127.0.0.1:\(registrarPort) (stack native) answered localhost:"),
            "\(routes.standardOutput)\(routes.output)")
        let erlangRoute = try NodeProcess(
            binary: Self.binary, arguments: ["routes", "--config", config.path, "erl_x@localhost", "--resolve"], environment: environment)
        #expect(await erlangRoute.exitStatus() == 0)
        #expect(
            erlangRoute.standardOutput.contains("1. '^erl[^@]*@': epmd at localhost:\(epmd.address!.port!) (stack erlang) failed: epmd at localhost"),
            "\(erlangRoute.standardOutput)")

        let missing = try NodeProcess(
            binary: Self.binary, arguments: ["send", "--config", config.path, "nobody@localhost", "echo", "hello"], environment: environment)
        #expect(await missing.exitStatus() != 0)
        #expect(missing.output.contains("'nobody' is not registered"))
    }
}

/// A child process whose output is collected as it arrives.
final class NodeProcess: Sendable {
    let process: Process
    let stderrText = Mutex("")
    let stdoutText = Mutex("")
    let lines: AsyncStream<String>
    let lineSink: AsyncStream<String>.Continuation
    let exited: AsyncStream<Int32>
    let exitSink: AsyncStream<Int32>.Continuation

    init(binary: URL, arguments: [String], environment: [String: String]) throws {
        process = Process()
        process.executableURL = binary
        process.arguments = arguments
        process.environment = environment
        (lines, lineSink) = AsyncStream.makeStream(of: String.self)
        (exited, exitSink) = AsyncStream.makeStream(of: Int32.self, bufferingPolicy: .bufferingNewest(1))
        let errorPipe = Pipe()
        let outputPipe = Pipe()
        process.standardError = errorPipe
        process.standardOutput = outputPipe
        // Each pipe is read to its end by a thread of its own (blocking reads: no dispatch
        // sources, which crash on Linux when many children exit at once); the exit is
        // reported once both pipes are drained and the process has terminated.
        let errors = errorPipe.fileHandleForReading
        let output = outputPipe.fileHandleForReading
        Thread.detachNewThread { self.drain(errors, isError: true) }
        Thread.detachNewThread { self.drain(output, isError: false) }
        process.terminationHandler = { process in
            let status = process.terminationStatus
            self.finish { $0.status = status }
        }
        try process.run()
    }

    /// Open pipes and the exit status, until both pipes are drained and it exited.
    let ending = Mutex((openPipes: 2, status: Int32?.none))

    func drain(_ handle: FileHandle, isError: Bool) {
        while case let data = handle.availableData, !data.isEmpty {
            let chunk = String(decoding: data, as: UTF8.self)
            if isError { stderrText.withLock { $0 += chunk } } else { stdoutText.withLock { $0 += chunk } }
            lineSink.yield(chunk)
        }
        finish { $0.openPipes -= 1 }
    }

    func finish(_ update: (inout (openPipes: Int, status: Int32?)) -> Void) {
        let status = ending.withLock { state -> Int32? in
            update(&state)
            return state.openPipes == 0 ? state.status : nil
        }
        guard let status else { return }
        lineSink.finish()
        exitSink.yield(status)
        exitSink.finish()
    }

    var output: String { stderrText.withLock { $0 } }
    var standardOutput: String { stdoutText.withLock { $0 } }

    /// Waits until the process has printed (on either stream) a line containing `text`
    /// (fails if it exits first).
    func waitForLine(containing text: String) async throws {
        if output.contains(text) || standardOutput.contains(text) { return }
        for await _ in lines where output.contains(text) || standardOutput.contains(text) { return }
        throw CommandLineFailure(message: "the process exited before printing '\(text)'; it printed:\n\(standardOutput)\n\(output)")
    }

    func exitStatus() async -> Int32 {
        for await status in exited { return status }
        return process.terminationStatus
    }

    /// Signals the process by its pid: SIGTERM (a graceful shutdown) unless told
    /// otherwise (`erl -noshell` does not act on SIGTERM). Does not wait: the exit is
    /// reported through `exitStatus()` (Foundation's `waitUntilExit` is not safe with
    /// many processes exiting at once).
    func signal(_ signal: Int32 = SIGTERM) {
        if process.isRunning { kill(process.processIdentifier, signal) }
    }

    /// Signals the process and waits until it has exited.
    func stop(signal: Int32 = SIGTERM) async {
        self.signal(signal)
        _ = await exitStatus()
    }
}

struct CommandLineFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
