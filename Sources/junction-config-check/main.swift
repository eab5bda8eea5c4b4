import Foundation
import JunctionCore
import Yams

/// `junction-config-check [--explain NODE]... [FILE|DIRECTORY]...`: validates Junction
/// config files (node configs and `junction load` scenarios; directories are searched for
/// `.yaml` files, `Config` by default) and, with `--explain`, prints the routes each node
/// config would try for NODE. Exits 1 when a file is invalid. The SwiftPM command plugin
/// `swift package junction-config-check` runs it.
/// Writes a line unbuffered, so it comes before anything the plugin prints after the run.
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

let usage = "usage: junction-config-check [--explain NODE]... [FILE|DIRECTORY]...  (default: Config)"
var explain: [NodeName] = []
var paths: [String] = []
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--explain":
        guard let text = arguments.popFirst() else {
            say("--explain needs a node name (name@host)\n\(usage)")
            exit(2)
        }
        do { explain.append(try NodeName(text)) } catch {
            say("--explain \(text): \(error)")
            exit(2)
        }
    case "-h", "--help":
        say(usage)
        exit(0)
    default:
        paths.append(argument)
    }
}

/// The `.yaml` files at `path`, or under it when it is a directory.
func yamlFiles(_ path: String) -> [String] {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return [path] }
    guard isDirectory.boolValue else { return [path] }
    let entries = FileManager.default.enumerator(atPath: path)?.compactMap { $0 as? String } ?? []
    return entries.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted().map { "\(path)/\($0)" }
}

let files = (paths.isEmpty ? ["Config"] : paths).flatMap(yamlFiles)
guard !files.isEmpty else {
    say("no .yaml files in \(paths.isEmpty ? "Config" : paths.joined(separator: ", "))")
    exit(1)
}
var failed = 0
for file in files {
    do {
        let text = try String(contentsOfFile: file, encoding: .utf8)
        // A load scenario lists `nodes:`; a node config has `node:`.
        let keys = ((try? Yams.load(yaml: text)) as? [String: Any]).map { Set($0.keys) } ?? []
        if keys.contains("nodes") {
            let scenario = try ConfigLoader.decode(LoadScenario.self, yaml: text, file: file)
            say("ok    \(file): load scenario '\(scenario.name)', \(scenario.nodes.count) nodes, \(scenario.routes.count) routes, \(scenario.faults.count) faults")
            continue
        }
        let config = try ConfigLoader.load(yaml: text, file: file)
        say("ok    \(file): node \(config.node.name), stacks \(config.stacks.map(\.name).joined(separator: ", ")), \(config.routes.count) routes")
        guard !explain.isEmpty else { continue }
        // Route cookies are not read: the explanation names their source, not their value.
        let table = try RouteTable(routes: config.routes.map { route in
            var route = route
            route.cookie = nil
            return try route.staticRoute(environment: [:])
        })
        for node in explain {
            say("      routes for \(node):")
            for line in config.explainRoutes(for: node, table: table) { say("        \(line)") }
            let cookies = config.routes.filter { route in route.cookie != nil && ((try? Regex(route.match)).map { node.description.contains($0) } ?? false) }
            for route in cookies { say("        ('\(route.match)' overrides the cookie, from \(route.cookie!.env.map { "$\($0)" } ?? route.cookie!.file ?? "?"))") }
        }
    } catch {
        failed += 1
        say("FAIL  \(error)")
    }
}
say(failed == 0 ? "\(files.count) files valid" : "\(failed) of \(files.count) files invalid")
exit(failed == 0 ? 0 : 1)
