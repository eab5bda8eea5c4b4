import JunctionCore
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// A request that got no complete answer: no connection, a timeout, or a connection
/// that closed early.
public struct HTTPRequestError: Error, Sendable, CustomStringConvertible {
    public let description: String
}

/// One HTTP/1.1 request on a connection of its own, for the few HTTP peers Junction talks
/// to (a node's admin endpoint, etcd's JSON gateway): the answer read whole, or a
/// streaming answer cut into the JSON objects it carries.
public struct HTTPRequest: Sendable {
    public var method: HTTPMethod
    public var host: String
    public var port: Int
    public var path: String
    public var headers: [(String, String)]
    public var body: [UInt8]?
    /// TLS to the server; nil for plain HTTP.
    public var tls: NIOSSLContext?
    /// For connecting, and for the whole answer of `response`.
    public var timeout: TimeAmount

    public init(
        _ method: HTTPMethod, host: String, port: Int, path: String, headers: [(String, String)] = [], body: [UInt8]? = nil, tls: NIOSSLContext? = nil,
        timeout: TimeAmount = .seconds(5)
    ) {
        self.method = method
        self.host = host
        self.port = port
        self.path = path
        self.headers = headers
        self.body = body
        self.tls = tls
        self.timeout = timeout
    }

    /// The status and the whole body.
    public func response(group: any EventLoopGroup) -> EventLoopFuture<(status: Int, body: [UInt8])> {
        let reader = HTTPResponseReader(mode: .whole, loop: group.next())
        return connect(group: group, reader: reader).flatMap { channel in
            send(on: channel)
            let deadline = channel.eventLoop.scheduleTask(in: timeout) {
                reader.fail(HTTPRequestError(description: "no answer within \(timeout.nanoseconds / 1_000_000) ms"), channel: channel)
            }
            return reader.whole.futureResult.always { _ in
                deadline.cancel()
                channel.close(promise: nil)
            }
        }
    }

    /// Sends the request and hands each complete top-level JSON object of the answer's
    /// body to `object` as it arrives (etcd's gateway writes one per message of a stream).
    /// `opened` gets the channel, so the caller can cut the stream by closing it. Returns
    /// when the answer ends; throws when it breaks or its status is not 200.
    public func stream(group: any EventLoopGroup, opened: @Sendable (any Channel) -> Void, object: @escaping @Sendable ([UInt8]) -> Void) async throws {
        let reader = HTTPResponseReader(mode: .stream(object), loop: group.next())
        let channel = try await connect(group: group, reader: reader).get()
        opened(channel)
        send(on: channel)
        defer { channel.close(promise: nil) }
        try await reader.ended.futureResult.get()
    }

    func connect(group: any EventLoopGroup, reader: HTTPResponseReader) -> EventLoopFuture<any Channel> {
        let (tls, host) = (self.tls, self.host)
        return ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: IPAddress(host) == nil ? host : nil))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(reader)
                }
            }
            .connect(host: host, port: port)
            .flatMapErrorThrowing { error in
                // Never connected: nothing else will complete the reader's promises.
                reader.finish(error)
                throw error
            }
    }

    func send(on channel: any Channel) {
        var head = HTTPHeaders()
        head.add(name: "Host", value: host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)")
        head.add(name: "Content-Length", value: String(body?.count ?? 0))
        for (name, value) in headers { head.add(name: name, value: value) }
        channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: head)), promise: nil)
        if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(channel.allocator.buffer(bytes: body))), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }
}

/// Reads one HTTP answer: whole, or as a stream of JSON objects.
final class HTTPResponseReader: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: the mutable state is touched on the channel's event loop only (and in
    // `finish` before any channel exists); the promises are thread-safe.
    typealias InboundIn = HTTPClientResponsePart

    enum Mode {
        case whole
        case stream(@Sendable ([UInt8]) -> Void)
    }

    let mode: Mode
    var status = 0
    var body: [UInt8] = []
    let whole: EventLoopPromise<(status: Int, body: [UInt8])>
    let ended: EventLoopPromise<Void>
    var done = false

    init(mode: Mode, loop: any EventLoop) {
        self.mode = mode
        whole = loop.makePromise()
        ended = loop.makePromise()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): status = Int(head.status.code)
        case .body(var buffer):
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
            if case .stream(let object) = mode, status == 200 {
                for json in Self.takeObjects(&body) { object(json) }
            }
        case .end:
            finish(nil)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(HTTPRequestError(description: "the connection closed before the answer was complete"))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(error)
        context.close(promise: nil)
    }

    func fail(_ error: any Error, channel: any Channel) {
        channel.eventLoop.execute {
            self.finish(error)
            channel.close(promise: nil)
        }
    }

    func finish(_ error: (any Error)?) {
        guard !done else { return }
        done = true
        if let error {
            whole.fail(error)
            ended.fail(error)
            return
        }
        whole.succeed((status, body))
        if case .stream = mode, status != 200 {
            ended.fail(HTTPRequestError(description: "the server answered \(status): \(String(decoding: body.prefix(200), as: UTF8.self))"))
        } else {
            ended.succeed(())
        }
    }

    /// Removes the complete top-level JSON objects at the start of `buffer` and returns
    /// their bytes.
    static func takeObjects(_ buffer: inout [UInt8]) -> [[UInt8]] {
        var objects: [[UInt8]] = []
        var depth = 0
        var inString = false
        var escaped = false
        var start: Int?
        var consumed = 0
        for index in buffer.indices {
            let byte = buffer[index]
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"):
                if depth == 0 { start = index }
                depth += 1
            case UInt8(ascii: "}"):
                depth -= 1
                if depth == 0, let first = start {
                    objects.append(Array(buffer[first...index]))
                    consumed = index + 1
                    start = nil
                }
            default: break
            }
        }
        buffer.removeFirst(consumed)
        return objects
    }
}
