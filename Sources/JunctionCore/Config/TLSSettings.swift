/// A certificate chain and its private key, as PEM files.
public struct CertificateFiles: Sendable, Hashable, Decodable, CustomStringConvertible {
    /// PEM file with the certificate, then any intermediates.
    public var certificate: String
    /// PEM file with the private key.
    public var key: String

    enum CodingKeys: String, CodingKey, CaseIterable { case certificate, key }

    public init(certificate: String, key: String) {
        self.certificate = certificate
        self.key = key
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        certificate = try container.decode(String.self, forKey: .certificate)
        key = try container.decode(String.self, forKey: .key)
    }

    public var description: String { certificate }
}

/// `stacks[].tls` — TLS for every link of a native stack: its acceptors require it and
/// its dials use it. Both sides present a certificate that chains to `trust` (mutual
/// TLS), and the native handshake binds both certificates' fingerprints into its proofs.
public struct TLSSettings: Sendable, Hashable, Decodable {
    /// What this node presents (a route's `certificate` replaces it when dialling).
    public var identity: CertificateFiles
    /// PEM file with the certificate authorities a peer's certificate must chain to.
    public var trust: String
    /// The files are checked for changes at most this often, when a connection starts;
    /// a change is loaded for new connections, live ones keep theirs.
    public var reloadCheck: ConfigDuration

    enum CodingKeys: String, CodingKey, CaseIterable { case certificate, key, trust, reloadCheck }

    public init(identity: CertificateFiles, trust: String, reloadCheck: ConfigDuration = .seconds(1)) {
        self.identity = identity
        self.trust = trust
        self.reloadCheck = reloadCheck
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.strictContainer(keyedBy: CodingKeys.self)
        identity = CertificateFiles(
            certificate: try container.decode(String.self, forKey: .certificate), key: try container.decode(String.self, forKey: .key))
        trust = try container.decode(String.self, forKey: .trust)
        reloadCheck = try container.value(.reloadCheck, default: .seconds(1))
    }
}
