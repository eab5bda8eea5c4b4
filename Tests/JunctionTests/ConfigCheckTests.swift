import Foundation
import JunctionLoad
import Testing

/// The `junction-config-check` tool that `swift package junction-config-check` runs.
@Suite("junction-config-check")
struct ConfigCheckTests {
    static var tool: URL { CommandLineTests.binary.deletingLastPathComponent().appendingPathComponent("junction-config-check") }
    static var configDirectory: String { URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Config").standardized.path }

    func check(_ arguments: [String]) async throws -> (Int32, String) {
        let process = try ChildProcess(binary: Self.tool, arguments: arguments, environment: [:])
        let status = await process.exitStatus()
        return (status, process.standardOutput)
    }

    @Test("every file in Config/ passes: node configs and load scenarios")
    func shipped() async throws {
        let (status, output) = try await check([Self.configDirectory])
        #expect(status == 0, "\(output)")
        let files = FileManager.default.enumerator(atPath: Self.configDirectory)!.compactMap { $0 as? String }.filter { $0.hasSuffix(".yaml") }
        #expect(files.count >= 6)
        for file in files { #expect(output.contains("ok    \(Self.configDirectory)/\(file):"), "\(file): \(output)") }
        #expect(output.contains("load scenario 'failover'"))
        #expect(output.hasSuffix("\(files.count) files valid\n"))
    }

    @Test("a broken file prints its key path and the problem, and the exit status is 1")
    func broken() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("junction-check-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("bad.yaml")
        try """
            node: {name: gw@localhost, cookie: {env: C}}
            stacks: [{name: native, kind: native}]
            routes:
              - {match: "^a", resolver: native}
              - {match: "(unclosed", resolver: native}
            """.write(to: file, atomically: true, encoding: .utf8)
        let (status, output) = try await check([file.path])
        #expect(status == 1)
        #expect(output.contains("FAIL  \(file.path): routes[1].match:"), "\(output)")
        #expect(output.contains("1 of 1 files invalid"))
    }

    @Test("--explain prints the routes each config would try for a node")
    func explain() async throws {
        let (status, output) = try await check(["--explain", "e1@localhost", "\(Self.configDirectory)/bridge.yaml"])
        #expect(status == 0, "\(output)")
        #expect(output.contains("routes for e1@localhost:"), "\(output)")
        #expect(output.contains("1. "), "\(output)")
    }
}
