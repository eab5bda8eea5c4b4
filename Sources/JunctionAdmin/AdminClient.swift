import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A failed call to an admin endpoint: unreachable, or an error status with its message.
public struct AdminCallError: Error, Sendable, CustomStringConvertible {
    public let status: Int?
    public let description: String
}

/// Talks to a node's admin endpoint (`junction status`, `block`, `connect`, ... and the
/// tests): one HTTP/1.1 request per connection, answers read whole.
public struct AdminClient: Sendable {
    public let host: String
    public let port: Int
    public let token: String?
    let group: any EventLoopGroup

    /// `url` is `http://HOST:PORT` (an IPv6 host in brackets); a path is ignored.
    public init(url: String, token: String?, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
        guard let components = URLComponents(string: url), components.scheme == "http", let host = components.host, let port = components.port else {
            throw AdminCallError(status: nil, description: "'\(url)' is not an admin URL like http://127.0.0.1:9464")
        }
        self.host = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        self.port = port
        self.token = token
        self.group = group
    }

    /// The status and body of `method path` with `body` (JSON) if any.
    public func call(_ method: HTTPMethod, _ path: String, json body: [String: String]? = nil) async throws -> (status: Int, body: [UInt8]) {
        let collector = ResponseCollector()
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.pipeline.addHTTPClientHandlers().flatMap { channel.pipeline.addHandler(collector) }
                }
                .connect(host: host, port: port).get()
        } catch {
            throw AdminCallError(status: nil, description: "no admin endpoint answers at http://\(host):\(port) (\(error)); is the node running with admin: in its config?")
        }
        let payload = try body.map { try JSONSerialization.data(withJSONObject: $0) }
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "\(host):\(port)")
        headers.add(name: "Content-Length", value: String(payload?.count ?? 0))
        if payload != nil { headers.add(name: "Content-Type", value: "application/json") }
        if let token { headers.add(name: "Authorization", value: "Bearer \(token)") }
        channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)), promise: nil)
        if let payload { channel.write(HTTPClientRequestPart.body(.byteBuffer(channel.allocator.buffer(bytes: payload))), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        return try await collector.response.futureResult.get()
    }

    /// Decodes a 2xx answer as `T`; any other status throws the endpoint's error message.
    public func get<T: Decodable>(_ type: T.Type, _ method: HTTPMethod = .GET, _ path: String, json body: [String: String]? = nil) async throws -> T {
        let (status, bytes) = try await call(method, path, json: body)
        guard (200..<300).contains(status) else { throw Self.error(status: status, body: bytes) }
        return try JSONDecoder().decode(T.self, from: Data(bytes))
    }

    static func error(status: Int, body: [UInt8]) -> AdminCallError {
        let message = (try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])?["error"] as? String ?? String(decoding: body, as: UTF8.self)
        return AdminCallError(status: status, description: "the node answered \(status): \(message)")
    }
}

/// Gathers one response; fails if the connection closes before it is complete.
final class ResponseCollector: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: state touched on the channel's event loop only; `response` is a promise.
    typealias InboundIn = HTTPClientResponsePart
    var status = 0
    var body: [UInt8] = []
    var promise: EventLoopPromise<(status: Int, body: [UInt8])>?
    let response: EventLoopPromise<(status: Int, body: [UInt8])>

    init() {
        response = MultiThreadedEventLoopGroup.singleton.next().makePromise()
        promise = response
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): status = Int(head.status.code)
        case .body(var buffer): body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            promise?.succeed((status, body))
            promise = nil
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise?.fail(AdminCallError(status: nil, description: "the admin endpoint closed the connection before answering"))
        promise = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise?.fail(error)
        promise = nil
        context.close(promise: nil)
    }
}
