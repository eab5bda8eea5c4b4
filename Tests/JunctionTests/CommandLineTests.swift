import Foundation
import JunctionLoad
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

/// The tests' name for the library's child process.
typealias NodeProcess = ChildProcess

struct CommandLineFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
