/// `admin:` — the admin endpoint: JSON about the node and requests to it, the status page,
/// and `/metrics` for Prometheus. Off unless configured. Bound to anything but loopback it
/// needs a bearer token (from an environment variable or a file); with a token configured,
/// every request must carry it, on loopback too.
public struct AdminSettings: Sendable, Hashable, Decodable {
    public var host: String
    /// 0 lets the kernel pick (the node logs the port it got).
    public var port: Int
    public var token: CookieSource?

    enum CodingKeys: String, CodingKey, CaseIterable { case host, port, token }

    public init(host: String = "127.0.0.1", port: Int, token: CookieSource? = nil) {
        self.host = host
        self.port = port
        self.token = token
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        host = try container.value(.host, default: "127.0.0.1")
        port = try container.decode(Int.self, forKey: .port)
        token = try container.decodeIfPresent(CookieSource.self, forKey: .token)
        guard (0...65535).contains(port) else { throw invalid(decoder.codingPath + [CodingKeys.port], "must be 0...65535, not \(port)") }
        if token == nil, !Self.isLoopback(host) {
            throw invalid(
                decoder.codingPath + [CodingKeys.token],
                "the admin endpoint binds \(host), which is not loopback, so it needs a bearer token: add token: {env: VARIABLE} or token: {file: PATH}, or bind 127.0.0.1"
            )
        }
    }

    /// 127.0.0.0/8, ::1 or localhost.
    public static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }
}
