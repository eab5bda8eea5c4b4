import Foundation
import Junction
import JunctionCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

/// The admin endpoint of a node (`admin:` in the config): JSON about the node and
/// requests to it under `/api/`, the status page at `/`, and `/metrics` in Prometheus text
/// format. Each request is answered and the connection closed; errors are JSON
/// (`{"error": ..., "status": ...}`) with the status code.
public final class AdminServer: Sendable {
    let channel: any Channel
    /// Where it listens.
    public let address: SocketAddress

    init(channel: any Channel) {
        self.channel = channel
        self.address = channel.localAddress!
    }

    /// Binds `settings.host:settings.port`. `configFile` is what `POST /api/reload` reads
    /// again; `registry` what `/metrics` exports (nil: `/metrics` answers 404).
    public static func start(
        node: Node, settings: AdminSettings, environment: [String: String], configFile: String?, registry: PrometheusCollectorRegistry?,
        group: any EventLoopGroup, logger: Logger
    ) async throws -> AdminServer {
        let token = try settings.token.map { try $0.read(environment: environment, createIfMissing: false, what: "admin token") }
        let api = AdminAPI(node: node, token: token?.value, configFile: configFile, environment: environment, registry: registry, logger: logger)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
                    channel.pipeline.addHandler(AdminHTTPHandler(api: api))
                }
            }
            .bind(host: settings.host, port: settings.port).get()
        let server = AdminServer(channel: channel)
        logger.info("admin endpoint on http://\(Self.authority(server.address)) (status page at /, JSON under /api/, metrics at /metrics)\(token == nil ? "" : "; requests need the bearer token")")
        return server
    }

    /// `host:port`, with brackets around an IPv6 host.
    static func authority(_ address: SocketAddress) -> String {
        let host = address.ipAddress ?? "?"
        return host.contains(":") ? "[\(host)]:\(address.port ?? 0)" : "\(host):\(address.port ?? 0)"
    }

    public var url: String { "http://\(Self.authority(address))" }

    public func shutdown() async {
        try? await channel.close()
    }
}

/// One HTTP request as the API sees it.
struct AdminRequest: Sendable {
    var method: HTTPMethod
    var path: String
    var query: [String: String]
    var headers: HTTPHeaders
    var body: [UInt8]
}

/// One answer.
struct AdminResponse: Sendable {
    var status: HTTPResponseStatus
    var contentType: String
    var body: [UInt8]
    var headers: [(String, String)] = []

    static func json<T: Encodable>(_ value: T, status: HTTPResponseStatus = .ok) -> AdminResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let body = (try? encoder.encode(value)).map { Array($0) } ?? Array("{}".utf8)
        return AdminResponse(status: status, contentType: "application/json", body: body + [10])
    }

    static func error(_ status: HTTPResponseStatus, _ message: String) -> AdminResponse {
        json(ErrorBody(error: message, status: Int(status.code)), status: status)
    }

    struct ErrorBody: Codable { var error: String; var status: Int }
}

/// Reads a request, hands it to the API off the event loop, writes the answer, closes.
final class AdminHTTPHandler: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: the handler's state is touched on its channel's event loop only.
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let api: AdminAPI
    var head: HTTPRequestHead?
    var body: [UInt8] = []
    static let maxBody = 1 << 20

    init(api: AdminAPI) { self.api = api }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
        case .body(var buffer):
            guard body.count + buffer.readableBytes <= Self.maxBody else {
                respond(.error(.payloadTooLarge, "request bodies are at most \(Self.maxBody) bytes"), context: context)
                return
            }
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            guard let head else { return }
            self.head = nil
            let components = URLComponents(string: head.uri)
            var query: [String: String] = [:]
            for item in components?.queryItems ?? [] { query[item.name] = item.value ?? "" }
            let request = AdminRequest(method: head.method, path: components?.path ?? head.uri, query: query, headers: head.headers, body: body)
            let api = api
            let loop = context.eventLoop
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            Task {
                let response = await api.handle(request)
                loop.execute {
                    let (handler, context) = bound.value
                    handler.respond(response, context: context)
                }
            }
        }
    }

    func respond(_ response: AdminResponse, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: String(response.body.count))
        headers.add(name: "Connection", value: "close")
        headers.add(name: "Cache-Control", value: "no-store")
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: response.status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
