import Foundation
import JunctionTransport
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
        var headers: [(String, String)] = []
        if body != nil { headers.append(("Content-Type", "application/json")) }
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        let payload = try body.map { Array(try JSONSerialization.data(withJSONObject: $0)) }
        let request = HTTPRequest(method, host: host, port: port, path: path, headers: headers, body: payload)
        do {
            return try await request.response(group: group).get()
        } catch {
            throw AdminCallError(status: nil, description: "no answer from an admin endpoint at http://\(host):\(port) (\(error)); is the node running with admin: in its config?")
        }
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
