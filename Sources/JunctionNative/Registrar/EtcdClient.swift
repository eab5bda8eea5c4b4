import Foundation
import JunctionCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// etcd answered, but with an error (`code` is the gRPC status code the gateway carries).
public struct EtcdError: Error, Sendable, CustomStringConvertible {
    public let code: Int?
    public let description: String
}

/// etcd's v3 API through its HTTP/JSON gateway (`POST /v3/...`), on one connection per
/// request; endpoints are tried in order, starting with the last one that answered, and a
/// request that fails to connect or times out goes to the next. Keys and values travel
/// base64-encoded, 64-bit numbers as strings, as the gateway wants them.
final class EtcdClient: Sendable {
    struct Endpoint: Sendable, CustomStringConvertible {
        let tls: Bool
        let host: String
        let port: Int
        var description: String { "\(tls ? "https" : "http")://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
    }

    let endpoints: [Endpoint]
    let timeout: TimeAmount
    let group: any EventLoopGroup
    let tls: NIOSSLContext?
    /// Index of the endpoint that answered last.
    let preferred = Mutex(0)

    init(settings: EtcdSettings, group: any EventLoopGroup) throws {
        endpoints = settings.endpoints.compactMap(EtcdSettings.parse).map { Endpoint(tls: $0.tls, host: $0.host, port: $0.port) }
        timeout = settings.requestTimeout.timeAmount
        self.group = group
        if let trust = settings.trust {
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.trustRoots = .file(trust)
            if let identity = settings.certificate {
                configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(identity.certificate).map { .certificate($0) }
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: identity.key, format: .pem))
            }
            tls = try NIOSSLContext(configuration: configuration)
        } else {
            tls = nil
        }
    }

    /// `POST path` with `body`, answered as a JSON object. Errors etcd reports are thrown
    /// as they are (the next endpoint would say the same); an endpoint that cannot be
    /// reached or does not answer in time is skipped for the next.
    func call(_ path: String, _ body: [String: Any]) async throws -> [String: Any] {
        try await callOnLoop(path, body).get().value
    }

    /// A parsed JSON answer, passed between threads. @unchecked: JSONSerialization's
    /// output is a tree of immutable values (strings, numbers, arrays, dictionaries) that
    /// nothing mutates after parsing.
    struct Answer: @unchecked Sendable {
        let value: [String: Any]
    }

    /// `call` on the event loops alone, for work that must not wait for a busy Swift
    /// concurrency pool (the lease keep-alive).
    func callOnLoop(_ path: String, _ body: [String: Any]) -> EventLoopFuture<Answer> {
        let loop = group.next()
        let payload: Data
        do { payload = try JSONSerialization.data(withJSONObject: body) } catch { return loop.makeFailedFuture(error) }
        let first = preferred.withLock { $0 }
        @Sendable func attempt(_ offset: Int, _ failures: [String]) -> EventLoopFuture<Answer> {
            guard offset < endpoints.count else {
                return loop.makeFailedFuture(EtcdError(code: nil, description: "no etcd endpoint answered \(path): \(failures.joined(separator: "; "))"))
            }
            let index = (first + offset) % endpoints.count
            let endpoint = endpoints[index]
            return exchange(endpoint, path: path, payload: payload).hop(to: loop)
                .flatMapThrowing { status, bytes -> Answer in
                    self.preferred.withLock { $0 = index }
                    let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] ?? [:]
                    guard status == 200 else {
                        let message = object["error"] as? String ?? object["message"] as? String ?? String(decoding: bytes.prefix(200), as: UTF8.self)
                        throw EtcdError(code: object["code"] as? Int, description: "etcd at \(endpoint) answered \(status) to \(path): \(message)")
                    }
                    return Answer(value: object)
                }
                .flatMapError { error in
                    if error is EtcdError { return loop.makeFailedFuture(error) }
                    return attempt(offset + 1, failures + ["\(endpoint): \(error)"])
                }
        }
        return attempt(0, [])
    }

    /// One request on a new connection: the status and the whole body.
    func exchange(_ endpoint: Endpoint, path: String, payload: Data) -> EventLoopFuture<(Int, [UInt8])> {
        let collector = EtcdResponse(mode: .whole)
        return connect(endpoint, handler: collector).flatMap { channel in
            self.send(path: path, payload: payload, endpoint: endpoint, on: channel)
            let deadline = channel.eventLoop.scheduleTask(in: self.timeout) {
                collector.fail(EtcdTimeout(description: "no answer within \(self.timeout.nanoseconds / 1_000_000) ms"), channel: channel)
            }
            return collector.whole.futureResult.always { _ in
                deadline.cancel()
                channel.close(promise: nil)
            }
        }
    }

    /// A streaming request (`/v3/watch`): each JSON message of the answer goes to
    /// `message` as it arrives; returns when the stream ends (or throws when it breaks).
    /// `opened` gets the channel, so the caller can cut the stream.
    func stream(_ path: String, _ body: [String: Any], opened: @Sendable (any Channel) -> Void, message: @escaping @Sendable ([String: Any]) -> Void) async throws {
        let payload = try JSONSerialization.data(withJSONObject: body)
        let first = preferred.withLock { $0 }
        var failures: [String] = []
        for offset in 0..<endpoints.count {
            let index = (first + offset) % endpoints.count
            let endpoint = endpoints[index]
            let collector = EtcdResponse(mode: .stream(message))
            let channel: any Channel
            do { channel = try await connect(endpoint, handler: collector).get() } catch {
                failures.append("\(endpoint): \(error)")
                continue
            }
            preferred.withLock { $0 = index }
            opened(channel)
            send(path: path, payload: payload, endpoint: endpoint, on: channel)
            defer { channel.close(promise: nil) }
            try await collector.ended.futureResult.get()
            return
        }
        throw EtcdError(code: nil, description: "no etcd endpoint accepted \(path): \(failures.joined(separator: "; "))")
    }

    func connect(_ endpoint: Endpoint, handler: EtcdResponse) -> EventLoopFuture<any Channel> {
        let tls = endpoint.tls ? self.tls : nil
        guard !endpoint.tls || tls != nil else {
            let error = EtcdError(code: nil, description: "\(endpoint) is https but no trust is configured")
            handler.finish(error)
            return group.next().makeFailedFuture(error)
        }
        return bootstrap(host: endpoint.host, tls: tls, handler: handler).connect(host: endpoint.host, port: endpoint.port)
            .flatMapErrorThrowing { error in
                // Never connected: nothing else will complete the handler's promises.
                handler.finish(error)
                throw error
            }
    }

    func bootstrap(host: String, tls: NIOSSLContext?, handler: EtcdResponse) -> ClientBootstrap {
        ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        let handler = try NIOSSLClientHandler(context: tls, serverHostname: IPAddress(host) == nil ? host : nil)
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
    }

    func send(path: String, payload: Data, endpoint: Endpoint, on channel: any Channel) {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "\(endpoint.host):\(endpoint.port)")
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(payload.count))
        channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: path, headers: headers)), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(channel.allocator.buffer(bytes: payload))), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }

    static func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

    static func text(_ base64: Any?) -> String? {
        guard let base64 = base64 as? String, let data = Data(base64Encoded: base64) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    /// etcd's int64s come as strings; small ones sometimes as numbers.
    static func int(_ value: Any?) -> Int64? {
        if let text = value as? String { return Int64(text) }
        return (value as? NSNumber)?.int64Value
    }

    /// The key after `prefix` (for a range over the prefix).
    static func rangeEnd(_ prefix: String) -> String {
        var bytes = Array(prefix.utf8)
        bytes[bytes.count - 1] += 1
        return Data(bytes).base64EncodedString()
    }
}

struct EtcdTimeout: Error, CustomStringConvertible {
    let description: String
}

/// Reads one HTTP answer: whole, or as a stream of JSON objects (the gateway writes one
/// per message of a streaming call).
final class EtcdResponse: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: the mutable state is touched on the channel's event loop only; the
    // promises are thread-safe.
    typealias InboundIn = HTTPClientResponsePart

    enum Mode {
        case whole
        case stream(@Sendable ([String: Any]) -> Void)
    }

    let mode: Mode
    var status = 0
    var body: [UInt8] = []
    let whole: EventLoopPromise<(Int, [UInt8])>
    let ended: EventLoopPromise<Void>
    var done = false

    init(mode: Mode) {
        self.mode = mode
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        whole = loop.makePromise()
        ended = loop.makePromise()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): status = Int(head.status.code)
        case .body(var buffer):
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
            if case .stream(let message) = mode, status == 200 {
                for object in Self.takeObjects(&body) { message(object) }
            }
        case .end:
            finish(nil)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(EtcdTimeout(description: "the connection closed before the answer was complete"))
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
        } else {
            whole.succeed((status, body))
            if case .stream = mode, status != 200 {
                ended.fail(EtcdError(code: nil, description: "etcd answered \(status): \(String(decoding: body.prefix(200), as: UTF8.self))"))
            } else {
                ended.succeed(())
            }
        }
    }

    /// Removes the complete top-level JSON objects at the start of `buffer`.
    static func takeObjects(_ buffer: inout [UInt8]) -> [[String: Any]] {
        var objects: [[String: Any]] = []
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
                    if let object = (try? JSONSerialization.jsonObject(with: Data(buffer[first...index]))) as? [String: Any] { objects.append(object) }
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
