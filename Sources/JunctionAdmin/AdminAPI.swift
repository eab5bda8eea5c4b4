import Foundation
import Junction
import JunctionCore
import Logging
import NIOHTTP1
import Prometheus

/// What the admin endpoint answers, path by path (Config/README.md, "Admin endpoint").
struct AdminAPI: Sendable {
    let node: Node
    let token: String?
    let configFile: String?
    let environment: [String: String]
    let registry: PrometheusCollectorRegistry?
    let logger: Logger

    func handle(_ request: AdminRequest) async -> AdminResponse {
        if let token, !authorized(request, token: token) {
            var response = AdminResponse.error(.unauthorized, "this endpoint needs 'Authorization: Bearer TOKEN' with the token of admin.token in the node's config")
            response.headers.append(("WWW-Authenticate", "Bearer"))
            return response
        }
        switch (request.method, request.path) {
        case (.GET, "/"), (.GET, "/index.html"):
            return AdminResponse(status: .ok, contentType: "text/html; charset=utf-8", body: Array(StatusPage.html.utf8))
        case (.GET, "/metrics"):
            guard let registry else { return .error(.notFound, "this node exports no metrics (it was started without a Prometheus registry)") }
            node.updateMetrics()
            return AdminResponse(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: registry.emitToBuffer())
        case (.GET, "/api/node"): return .json(NodeInfo(node))
        case (.GET, "/api/connections"): return .json(node.connectionStatuses())
        case (.GET, "/api/rules"): return .json(RulesInfo(node.accessRules))
        case (.GET, "/api/routes"): return await routes(request)
        case (.POST, "/api/connect"), (.POST, "/api/disconnect"): return await connection(request)
        case (.POST, "/api/block"), (.POST, "/api/allow"): return await rule(request)
        case (.POST, "/api/reload"): return reload()
        case (_, let path) where Self.paths.contains(path):
            return .error(.methodNotAllowed, "\(request.method) is not allowed on \(path); use \(Self.methods(path))")
        default:
            return .error(.notFound, "no such path: \(request.path); the API has \(Self.paths.sorted().joined(separator: ", "))")
        }
    }

    static let paths: Set<String> = [
        "/", "/index.html", "/metrics", "/api/node", "/api/connections", "/api/rules", "/api/routes", "/api/connect", "/api/disconnect", "/api/block",
        "/api/allow", "/api/reload",
    ]

    static func methods(_ path: String) -> String {
        ["/api/connect", "/api/disconnect", "/api/block", "/api/allow", "/api/reload"].contains(path) ? "POST" : "GET"
    }

    /// Compares the whole token whatever the first difference, so timing tells nothing.
    func authorized(_ request: AdminRequest, token: String) -> Bool {
        guard let header = request.headers.first(name: "Authorization"), header.hasPrefix("Bearer ") else { return false }
        let given = Array(header.dropFirst("Bearer ".count).utf8)
        let expected = Array(token.utf8)
        var difference = given.count ^ expected.count
        for index in 0..<max(given.count, expected.count) {
            difference |= Int((index < given.count ? given[index] : 0) ^ (index < expected.count ? expected[index] : 0))
        }
        return difference == 0
    }

    /// The request body as a JSON object of strings.
    func fields(_ request: AdminRequest) throws(AdminProblem) -> [String: String] {
        guard !request.body.isEmpty else { throw AdminProblem(.badRequest, "the request needs a JSON body, e.g. {\"node\": \"a@host\"}") }
        guard let object = try? JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any] else {
            throw AdminProblem(.badRequest, "the body is not a JSON object")
        }
        var fields: [String: String] = [:]
        for (key, value) in object {
            guard let text = value as? String else { throw AdminProblem(.badRequest, "'\(key)' must be a string") }
            fields[key] = text
        }
        return fields
    }

    func nodeName(_ text: String?) throws(AdminProblem) -> NodeName {
        guard let text else { throw AdminProblem(.badRequest, "'node' (name@host) is required") }
        do { return try NodeName(text) } catch { throw AdminProblem(.badRequest, "'\(text)' is not a node name: \(error)") }
    }

    func routes(_ request: AdminRequest) async -> AdminResponse {
        guard let text = request.query["node"] else { return .json(node.routes.routes.map(RouteInfo.init)) }
        do throws(AdminProblem) {
            let peer = try nodeName(text)
            let resolved = request.query["resolve"].map { $0 != "false" } ?? false ? await node.resolveCandidates(for: peer) : nil
            return .json(RouteExplanation(node: peer.description, routes: node.explainRoutes(for: peer), resolved: resolved))
        } catch {
            return error.response
        }
    }

    func connection(_ request: AdminRequest) async -> AdminResponse {
        do throws(AdminProblem) {
            let peer = try nodeName(try fields(request)["node"])
            if request.path == "/api/disconnect" {
                await node.request(.disconnectSystem(peer))
                return .json(["disconnected": peer.description])
            }
            do { try await node.connectSystem(peer) } catch {
                return .error(.badGateway, "cannot connect to \(peer): \(error)")
            }
            return .json(node.connectionStatuses().filter { $0.peer == peer.description })
        } catch {
            return error.response
        }
    }

    /// `{"ip": ...}`, `{"net": ...}` or `{"system": ...}`: one of them.
    func rule(_ request: AdminRequest) async -> AdminResponse {
        let block = request.path == "/api/block"
        let networkRequest: NetworkRequest
        do throws(AdminProblem) {
            let fields = try fields(request)
            guard fields.count == 1, let (kind, value) = fields.first else {
                throw AdminProblem(.badRequest, "give exactly one of 'ip', 'net' or 'system', e.g. {\"ip\": \"10.0.0.7\"}")
            }
            switch kind {
            case "ip":
                guard let address = IPAddress(value) else { throw AdminProblem(.badRequest, "'\(value)' is not an IPv4 or IPv6 address") }
                networkRequest = block ? .blockIp(address) : .allowIp(address)
            case "net":
                guard let network = IPNetwork(value) else { throw AdminProblem(.badRequest, "'\(value)' is not a network (address/prefix, e.g. 10.0.0.0/8)") }
                networkRequest = block ? .blockIpNet(network) : .allowIpNet(network)
            case "system":
                let peer = try nodeName(value)
                networkRequest = block ? .blockSystem(peer) : .allowSystem(peer)
            default:
                throw AdminProblem(.badRequest, "unknown field '\(kind)'; give one of 'ip', 'net' or 'system'")
            }
        } catch {
            return error.response
        }
        await node.request(networkRequest)
        return .json(RulesInfo(node.accessRules))
    }

    func reload() -> AdminResponse {
        guard let configFile else {
            return .error(.conflict, "this node runs on the embedded default config; start it with --config FILE to reload from that file")
        }
        do {
            let config = try ConfigLoader.load(file: configFile)
            let result = try node.reload(config, environment: environment)
            return .json(result)
        } catch {
            logger.warning("reload refused, the running config stays: \(error)")
            return .error(.unprocessableEntity, "reload refused, the running config stays: \(error)")
        }
    }
}

/// A request the API refuses, with its status.
struct AdminProblem: Error {
    let status: HTTPResponseStatus
    let message: String
    init(_ status: HTTPResponseStatus, _ message: String) {
        self.status = status
        self.message = message
    }
    var response: AdminResponse { .error(status, message) }
}

/// `GET /api/node`.
public struct NodeInfo: Codable {
    public struct Stack: Codable {
        public var name: String
        public var kind: String
        public var listening: [String]
        /// `epmd HOST:PORT`, or where the native stack registers (the embedded registrar's
        /// address, or the etcd cluster, with a note when its cache is stale).
        public var registrar: String
    }
    public struct Bridge: Codable {
        public var name: String
        public var node: String
        public var process: String
    }
    public var name: String
    public var creation: UInt32
    public var hidden: Bool
    public var stacks: [Stack]
    public var bridges: [Bridge]

    init(_ node: Node) {
        name = node.name.description
        creation = node.creation
        hidden = node.hidden
        let listening = node.listening
        stacks = node.config.stacks.map { stack in
            Stack(
                name: stack.name, kind: stack.kind.rawValue,
                listening: (listening[stack.name] ?? []).map { AdminServer.authority($0) },
                registrar: stack.kind == .erlang
                    ? "epmd \(stack.erlang.epmdHost):\(stack.erlang.epmdPort)" : node.registrarSummary(stack: stack.name) ?? "none")
        }
        bridges = node.config.bridges.map { Bridge(name: $0.name, node: $0.node.description, process: $0.process) }
    }
}

/// One entry of `GET /api/routes`.
public struct RouteInfo: Codable {
    public var match: String
    public var weight: Int
    public var resolver: String?
    public var explicit: String?
    public var overrides: [String]

    init(_ route: StaticRoute) {
        match = route.match
        weight = route.weight
        resolver = route.route.resolver
        explicit = route.route.explicit?.summary
        overrides = route.route.overrideSummary
    }
}

/// `GET /api/routes?node=NAME[&resolve=true]`.
public struct RouteExplanation: Codable {
    public var node: String
    public var routes: [String]
    public var resolved: [String]?
}

/// `GET /api/rules`, and the answer to block and allow.
public struct RulesInfo: Codable {
    public var ipRules: [String]
    public var allowedSystems: [String]
    public var blockedSystems: [String]

    init(_ rules: AccessRules) {
        ipRules = rules.ipRules.map(\.description)
        allowedSystems = rules.allowedSystems.sorted()
        blockedSystems = rules.blockedSystems.sorted()
    }
}
