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
            routes.standardOutput.contains("1. default resolver: registrar at localhost:\(registrarPort) (stack native) answered localhost:"),
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

    @Test("`junction status`, `block`, `connect`, `routes --running` and `reload` steer a running node through its admin endpoint")
    func adminCommands() async throws {
        let registrar = try await startRegistrar()
        defer { Task { await registrar.shutdown() } }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("junction-admin-cli-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("gw.yaml")
        try """
            node: {name: cli-gw@localhost, cookie: {env: JUNCTION_COOKIE}}
            stacks: [{name: native, kind: native, registrar: {port: \(registrar.port)}}]
            admin: {port: 0, token: {env: ADMIN_TOKEN}}
            """.write(to: config, atomically: true, encoding: .utf8)
        let environment = ["JUNCTION_COOKIE": "cli-admin", "ADMIN_TOKEN": "tok-\(UUID())", "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"]
        let gateway = try NodeProcess(binary: Self.binary, arguments: ["run", "--config", config.path, "--log-format", "json"], environment: environment)
        defer { gateway.signal() }
        try await gateway.waitForLine(containing: "is up")
        let url = try #require(gateway.output.firstMatch(of: /admin endpoint on (http:\/\/127\.0\.0\.1:\d+)/).map { String($0.1) }, "\(gateway.output)")
        #expect(gateway.output.split(separator: "\n").allSatisfy { $0.hasPrefix("{\"") }, "--log-format json: \(gateway.output)")
        let peer = try NodeProcess(
            binary: Self.binary, arguments: ["run", "--config", config.path, "--name", "cli-peer@localhost"],
            environment: environment.filter { $0.key != "ADMIN_TOKEN" }.merging(["ADMIN_TOKEN": "other"]) { $1 })
        defer { peer.signal() }
        try await peer.waitForLine(containing: "is up")

        func junction(_ arguments: String...) async throws -> (Int32, String, String) {
            let process = try NodeProcess(binary: Self.binary, arguments: arguments + ["--config", config.path, "--admin", url], environment: environment)
            let status = await process.exitStatus()
            return (status, process.standardOutput, process.output)
        }
        let connected = try await junction("connect", "cli-peer@localhost")
        #expect(connected.0 == 0 && connected.1.contains("cli-peer@localhost  up"), "\(connected)")
        let status = try await junction("status")
        #expect(status.0 == 0 && status.1.hasPrefix("cli-gw@localhost: native (native) on 127.0.0.1:"), "\(status)")
        #expect(status.1.contains("peer ") && status.1.contains("cli-peer@localhost  up     native  outgoing"), "\(status.1)")
        let blocked = try await junction("block", "net", "10.9.0.0/16")
        #expect(blocked.0 == 0 && blocked.1.contains("IP rules: block net 10.9.0.0/16"), "\(blocked)")
        let routes = try await junction("routes", "far@away")
        #expect(routes.0 == 0 && routes.1.contains("routes for far@away (running node):"), "\(routes)")
        let reload = try await junction("reload")
        #expect(reload.0 == 0 && reload.1.contains("reloaded: 0 routes, 0 IP rules"), "the file has no rules, so the block is gone: \(reload)")
        let refused = try await junction("connect", "nobody@localhost")
        #expect(refused.0 != 0 && refused.2.contains("answered 502: cannot connect to nobody@localhost"), "\(refused)")
        #expect(!refused.2.contains("Usage:"), "a failed request is not a usage mistake: \(refused.2)")

        // Without the token the endpoint refuses, and the command says why.
        let anonymous = try NodeProcess(
            binary: Self.binary, arguments: ["status", "--admin", url], environment: environment.filter { $0.key != "ADMIN_TOKEN" })
        #expect(await anonymous.exitStatus() != 0)
        #expect(anonymous.output.contains("answered 401"), "\(anonymous.output)")
    }
}

/// The tests' name for the library's child process.
typealias NodeProcess = ChildProcess

struct CommandLineFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
