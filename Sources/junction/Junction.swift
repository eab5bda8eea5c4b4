import ArgumentParser
import CoreMetrics
import Foundation
import Junction
import JunctionAdmin
import JunctionCore
import JunctionTerm
import Logging
import JunctionTransport
import NIOPosix
import Prometheus

@main
struct JunctionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "junction",
        abstract: "A gateway node for message-passing clusters.",
        subcommands: [
            Run.self, Send.self, Routes.self, Status.self, Block.self, Allow.self, Connect.self, Disconnect.self, Reload.self, Bench.self, Load.self,
        ])
}

/// Options every subcommand shares.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "Configuration file (YAML). Default: the embedded Config/junction.yaml.")
    var config: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(name: .long, help: "Log lines as text or as JSON objects (one per line).")
    var logFormat: LogFormat = .text

    func load() throws -> JunctionConfig {
        do {
            if let config { return try ConfigLoader.load(file: config) }
            return try ConfigLoader.load(yaml: String(decoding: PackageResources.junction_yaml, as: UTF8.self), file: "embedded Config/junction.yaml")
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func logger(_ label: String) -> Logger {
        switch logFormat {
        case .text: LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        case .json: LoggingSystem.bootstrap { JSONLogHandler(label: $0) }
        }
        var logger = Logger(label: label)
        logger.logLevel = logLevel
        return logger
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

enum LogFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

func parseNodeName(_ text: String) throws -> NodeName {
    do { return try NodeName(text) } catch { throw ValidationError("\(error)") }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a gateway node until SIGINT or SIGTERM.")

    @OptionGroup var options: ConfigOptions

    @Option(name: .long, help: "Node name (name@host), overriding node.name from the config.")
    var name: String?

    func run() async throws {
        let config = try options.load()
        let logger = options.logger("junction")
        let nodeName = try name.map(parseNodeName)
        let group = BusyPoll.eventLoopGroup(threads: config.node.eventLoopThreads, window: config.node.busyPoll.timeAmount)
        let environment = ProcessInfo.processInfo.environment
        // With an admin endpoint, metrics go to a registry that its /metrics exports.
        let registry = config.admin.map { _ in PrometheusCollectorRegistry() }
        // 'echo' exists before the node listens: a peer's first messages reach it.
        let (node, echo) = try await Node.start(
            config: config, name: nodeName, environment: environment, group: group,
            metrics: registry.map { PrometheusMetricsFactory(registry: $0) } ?? MetricsSystem.factory, logger: logger
        ) { try $0.spawn(name: "echo") }
        var admin: AdminServer?
        if let settings = config.admin {
            do {
                admin = try await AdminServer.start(
                    node: node, settings: settings, environment: environment, configFile: options.config, registry: registry, group: group, logger: logger)
            } catch {
                await node.shutdown()
                throw ValidationError("cannot start the admin endpoint on \(settings.host):\(settings.port): \(error)")
            }
        }
        logger.info("node \(node.name) is up; process 'echo' answers {From, Msg} with {echo, Msg} and gen_server calls with {echo, Request}")
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask(executorPreference: node.executor) { try await EchoService.run(echo) }
            tasks.addTask {
                // One line per network event.
                for await update in node.networkStatus() {
                    switch update {
                    case .snapshot(let snapshot):
                        logger.info("network status: \(snapshot.connections.count) connections, \(snapshot.rules.ipRules.count) IP rules, \(snapshot.rules.allowedSystems.count) allowed and \(snapshot.rules.blockedSystems.count) blocked systems")
                    case .event(let event):
                        logger.info("network: \(event)")
                    case .missed(let count):
                        logger.warning("network: \(count) status events were missed (the log fell behind)")
                    }
                }
            }
            tasks.addTask { await Signals.wait(for: [SIGINT, SIGTERM]) }
            _ = try await tasks.next()
            tasks.cancelAll()
        }
        logger.info("shutting down \(node.name)")
        await admin?.shutdown()
        await node.shutdown()
        try await group.shutdownGracefully()
    }
}

struct Send: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a term to a process on a node, from a short-lived hidden node.",
        discussion: "Example: junction send b@localhost echo hello --call")

    @OptionGroup var options: ConfigOptions

    @Argument(help: "The node to send to (name@host).")
    var node: String

    @Argument(help: "The registered name of the process there.")
    var process: String

    @Argument(help: "The term, in Erlang syntax, e.g. '{hello, 42, <<\"bin\">>}'.")
    var term: String

    @Flag(help: "Send {SenderPid, TERM} and print the first term that comes back.")
    var call = false

    @Option(help: "Seconds to wait for the reply with --call.")
    var timeout: Double = 5

    func run() async throws {
        let config = try options.load()
        let target = try parseNodeName(node)
        let message: Term
        do { message = try TermParser.parse(term) } catch { throw ValidationError("cannot parse the term: \(error)") }
        var logger = options.logger("junction-send")
        if options.logLevel == .info { logger.logLevel = .warning }
        let self_ = try NodeName("send-\(UInt32.random(in: 0...UInt32.max))@\(target.host)")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let client = try await Node.start(config: config, name: self_, hidden: true, environment: ProcessInfo.processInfo.environment, group: group, logger: logger)
        do {
            let me = try client.spawn()
            try await me.send(call ? .tuple([.pid(me.pid), message]) : message, to: .name(process, on: target))
            if call {
                do {
                    let reply = try await me.receive(timeout: .milliseconds(Int(timeout * 1000)))
                    print(TermPrinter.print(try reply.term()))
                } catch let error as ReceiveTimeout {
                    throw ValidationError("no reply from '\(process)' on \(target) within \(timeout) s (\(error)); is the process there and does it answer {From, Msg}?")
                }
            }
        } catch {
            await client.shutdown()
            try? await group.shutdownGracefully()
            throw error
        }
        await client.shutdown()
        try await group.shutdownGracefully()
    }
}

struct Routes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the routes tried for a node, in order, with their overrides; with --resolve, what each resolver answers.",
        discussion: "With --admin (or --running), the routes of the running node are shown, as it has them now (after reloads).")

    @OptionGroup var options: ConfigOptions

    @OptionGroup var admin: AdminOptions

    @Argument(help: "The node name (name@host).")
    var node: String

    @Flag(help: "Also ask each route's resolver (registrar or epmd) where the node is, and print the answers.")
    var resolve = false

    @Flag(help: "Ask the running node (its admin endpoint from the config) instead of reading the config.")
    var running = false

    func run() async throws {
        let config = try options.load()
        let target = try parseNodeName(node)
        if running || admin.admin != nil {
            let client = try admin.client(config: config)
            let query = "node=\(target.description.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? "")\(resolve ? "&resolve=true" : "")"
            let explanation = try await admin.run { try await client.get(RouteExplanation.self, .GET, "/api/routes?\(query)") }
            print("routes for \(target) (running node):")
            for line in explanation.routes { print("  \(line)") }
            if let resolved = explanation.resolved {
                print("resolved:")
                for line in resolved { print("  \(line)") }
            }
            return
        }
        let table: RouteTable
        do { table = try config.routeTable(environment: ProcessInfo.processInfo.environment) } catch { throw ValidationError("\(error)") }
        print("routes for \(target):")
        for line in config.explainRoutes(for: target, table: table) { print("  \(line)") }
        guard resolve else { return }
        var logger = options.logger("junction-routes")
        if options.logLevel == .info { logger.logLevel = .warning }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let node = try await Node.start(
            config: config, name: try NodeName("routes-\(UInt32.random(in: 0...UInt32.max))@\(target.host)"), hidden: true,
            environment: ProcessInfo.processInfo.environment, group: group, logger: logger)
        print("resolved:")
        for line in await node.resolveCandidates(for: target) { print("  \(line)") }
        await node.shutdown()
        try await group.shutdownGracefully()
    }
}
