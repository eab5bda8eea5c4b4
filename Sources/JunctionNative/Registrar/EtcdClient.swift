import Foundation
import JunctionCore
import JunctionTransport
import Logging
import NIOCore
import NIOSSL
import Synchronization

/// etcd answered with an error (`code` is the gRPC status code the gateway carries), or
/// no endpoint answered. `call` sets `unanswered` when one did not answer at all (rather
/// than refuse TLS): the request may or may not have been applied, and may succeed when
/// asked again.
public struct EtcdError: Error, Sendable, CustomStringConvertible {
    public let code: Int?
    public let description: String
    public var unanswered = false
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
        /// `transient`: some endpoint failed otherwise than by refusing TLS (which asking
        /// again would not change).
        @Sendable func attempt(_ offset: Int, _ failures: [String], transient: Bool) -> EventLoopFuture<Answer> {
            guard offset < endpoints.count else {
                return loop.makeFailedFuture(
                    EtcdError(code: nil, description: "no etcd endpoint answered \(path): \(failures.joined(separator: "; "))", unanswered: transient))
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
                    return attempt(offset + 1, failures + ["\(endpoint): \(error)"], transient: transient || !CertificateManager.isTLSFailure(error))
                }
        }
        return attempt(0, [], transient: false)
    }

    /// One request on a new connection: the status and the whole body.
    func exchange(_ endpoint: Endpoint, path: String, payload: Data) -> EventLoopFuture<(status: Int, body: [UInt8])> {
        guard let request = request(endpoint, path: path, payload: payload) else {
            return group.next().makeFailedFuture(EtcdError(code: nil, description: "\(endpoint) is https but no trust is configured"))
        }
        return request.response(group: group)
    }

    func request(_ endpoint: Endpoint, path: String, payload: Data) -> HTTPRequest? {
        guard !endpoint.tls || tls != nil else { return nil }
        return HTTPRequest(
            .POST, host: endpoint.host, port: endpoint.port, path: path, headers: [("Content-Type", "application/json")], body: Array(payload),
            tls: endpoint.tls ? tls : nil, timeout: timeout)
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
            guard let request = request(endpoint, path: path, payload: payload) else {
                failures.append("\(endpoint): https but no trust is configured")
                continue
            }
            let connected = Atomic(false)
            do {
                try await request.stream(
                    group: group,
                    opened: { channel in
                        connected.store(true, ordering: .relaxed)
                        self.preferred.withLock { $0 = index }
                        opened(channel)
                    },
                    object: { bytes in
                        if let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] { message(object) }
                    })
                return
            } catch where !connected.load(ordering: .relaxed) {
                failures.append("\(endpoint): \(error)")
            }
        }
        throw EtcdError(code: nil, description: "no etcd endpoint accepted \(path): \(failures.joined(separator: "; "))")
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
