import Foundation
import PackagePlugin

/// `swift package junction-config-check [--explain NODE]... [FILE|DIRECTORY]...`: runs the
/// small `junction-config-check` tool (it links only JunctionTerm and JunctionCore) on the
/// given files, or on every file in Config/ when none is given.
@main
struct JunctionConfigCheck: CommandPlugin {
    func performCommand(context: PluginContext, arguments: [String]) async throws {
        let tool = try context.tool(named: "junction-config-check")
        let process = Process()
        process.executableURL = tool.url
        process.arguments = arguments
        process.currentDirectoryURL = context.package.directoryURL
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            Diagnostics.error("junction-config-check found invalid config files (see above)")
            throw ConfigCheckFailed()
        }
    }
}

struct ConfigCheckFailed: Error, CustomStringConvertible {
    var description: String { "invalid config files" }
}
