import ArgumentParser
import Foundation
import Junction
import JunctionAdmin
import JunctionCore

/// How the commands that steer a running node find its admin endpoint.
struct AdminOptions: ParsableArguments {
    @Option(name: .long, help: "The running node's admin endpoint, e.g. http://127.0.0.1:9464. Default: admin: of the config.")
    var admin: String?

    /// The client for `--admin` or the config's `admin:`; the token from
    /// JUNCTION_ADMIN_TOKEN, else from the config's `admin.token`.
    func client(config: JunctionConfig) throws -> AdminClient {
        let environment = ProcessInfo.processInfo.environment
        let url: String
        if let admin {
            url = admin
        } else if let settings = config.admin, settings.port != 0 {
            url = "http://\(settings.host.contains(":") ? "[\(settings.host)]" : settings.host):\(settings.port)"
        } else {
            throw ValidationError("give --admin URL, or a config whose admin: section has a fixed port")
        }
        var token = environment["JUNCTION_ADMIN_TOKEN"]
        if token == nil, let source = config.admin?.token {
            do { token = try source.read(environment: environment, createIfMissing: false, what: "admin token").value } catch {
                throw ValidationError("\(error)")
            }
        }
        do { return try AdminClient(url: url, token: token) } catch { throw ValidationError("\(error)") }
    }

    /// Runs a call, turning its failure into a one-line error for the terminal.
    func run<T>(_ call: () async throws -> T) async throws -> T {
        do { return try await call() } catch { throw CommandFailed(description: "\(error)") }
    }
}

/// A command that could not do its work (printed as `Error: ...`, without the usage text
/// that belongs to mistakes on the command line).
struct CommandFailed: Error, CustomStringConvertible {
    let description: String
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the connections table of a running node (from its admin endpoint).")

    @OptionGroup var options: ConfigOptions
    @OptionGroup var admin: AdminOptions

    @Flag(help: "Print the JSON the endpoint answered instead of a table.")
    var json = false

    func run() async throws {
        let client = try admin.client(config: try options.load())
        if json {
            let (_, body) = try await admin.run { try await client.call(.GET, "/api/connections") }
            print(String(decoding: body, as: UTF8.self), terminator: "")
            return
        }
        let node = try await admin.run { try await client.get(NodeInfo.self, .GET, "/api/node") }
        let rows = try await admin.run { try await client.get([ConnectionStatus].self, .GET, "/api/connections") }
        print("\(node.name): \(node.stacks.map { "\($0.name) (\($0.kind)) on \($0.listening.joined(separator: ", "))" }.joined(separator: "; "))")
        print(Self.table(rows))
    }

    static func table(_ rows: [ConnectionStatus]) -> String {
        let header = ["peer", "state", "stack", "dir", "address", "links", "sent", "received", "msgs out", "msgs in", "ratio", "idle s", "retries", "queued", "unacked"]
        let cells = rows.map { row in
            [
                row.peer, row.state, row.stack, row.direction, row.address, "\(row.liveLinks)/\(row.poolSize)", bytes(row.bytesSent), bytes(row.bytesReceived),
                String(row.messagesSent), String(row.messagesReceived), row.compressionRatio.map { String(format: "%.2fx", $0) } ?? "-",
                row.idleSeconds.map { String(format: "%.1f", $0) } ?? "-", String(row.retries), String(row.queued), String(row.unacknowledged),
            ]
        }
        guard !cells.isEmpty else { return "no connections" }
        let widths = header.indices.map { column in ([header] + cells).map { $0[column].count }.max() ?? 0 }
        let line = { (row: [String]) in row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ") }
        return ([line(header)] + cells.map(line)).joined(separator: "\n")
    }

    static func bytes(_ count: Int) -> String {
        count >= 1_000_000 ? String(format: "%.1f MB", Double(count) / 1e6) : count >= 1000 ? String(format: "%.1f kB", Double(count) / 1e3) : "\(count) B"
    }
}

/// What `block` and `allow` act on.
enum RuleTarget: String, ExpressibleByArgument, CaseIterable {
    case ip, net, system
}

/// The arguments `block` and `allow` share.
struct RuleArguments: ParsableArguments {
    @OptionGroup var options: ConfigOptions
    @OptionGroup var admin: AdminOptions

    @Argument(help: "ip, net or system.")
    var kind: RuleTarget

    @Argument(help: "The address, network (address/prefix) or node name.")
    var value: String

    /// Posts the rule to `path` and prints the rules in force.
    func post(to path: String) async throws {
        let client = try admin.client(config: try options.load())
        let rules = try await admin.run { try await client.get(RulesInfo.self, .POST, path, json: [kind.rawValue: value]) }
        print("IP rules: \(rules.ipRules.isEmpty ? "none" : rules.ipRules.joined(separator: ", "))")
        print("allowed systems: \(rules.allowedSystems.isEmpty ? "none" : rules.allowedSystems.joined(separator: ", "))")
        print("blocked systems: \(rules.blockedSystems.isEmpty ? "none" : rules.blockedSystems.joined(separator: ", "))")
    }
}

struct Block: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Block an IP address, a network or a node on a running node (live connections it matches close).",
        discussion: "Examples: junction block ip 10.0.0.7 · junction block net 10.1.0.0/16 · junction block system bad@host")

    @OptionGroup var rule: RuleArguments

    func run() async throws { try await rule.post(to: "/api/block") }
}

struct Allow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Allow an IP address, a network or a node on a running node (an allowed system may connect despite IP blocks).")

    @OptionGroup var rule: RuleArguments

    func run() async throws { try await rule.post(to: "/api/allow") }
}

struct Connect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Make a running node connect to NODE (lifting a disconnect).")

    @OptionGroup var options: ConfigOptions
    @OptionGroup var admin: AdminOptions

    @Argument(help: "The node to connect to (name@host).")
    var node: String

    func run() async throws {
        let client = try admin.client(config: try options.load())
        let rows = try await admin.run { try await client.get([ConnectionStatus].self, .POST, "/api/connect", json: ["node": node]) }
        print(Status.table(rows))
    }
}

struct Disconnect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Make a running node close its connection to NODE and not reconnect until `junction connect`.")

    @OptionGroup var options: ConfigOptions
    @OptionGroup var admin: AdminOptions

    @Argument(help: "The node to disconnect (name@host).")
    var node: String

    func run() async throws {
        let client = try admin.client(config: try options.load())
        _ = try await admin.run { try await client.get([String: String].self, .POST, "/api/disconnect", json: ["node": node]) }
        print("disconnected \(node)")
    }
}

struct Reload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a running node read its config file again and apply the routes and access rules (an invalid file changes nothing).")

    @OptionGroup var options: ConfigOptions
    @OptionGroup var admin: AdminOptions

    func run() async throws {
        let client = try admin.client(config: try options.load())
        let result = try await admin.run { try await client.get(ReloadResult.self, .POST, "/api/reload") }
        print("reloaded: \(result.routes) routes, \(result.ipRules) IP rules, \(result.allowedSystems) allowed and \(result.blockedSystems) blocked systems")
        if !result.needsRestart.isEmpty { print("changed but applied only at a restart: \(result.needsRestart.joined(separator: ", "))") }
    }
}
