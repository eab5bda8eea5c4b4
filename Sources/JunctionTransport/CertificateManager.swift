import Crypto
import Foundation
import JunctionCore
import Logging
import NIOCore
import NIOSSL
import Synchronization

/// A TLS file that cannot be used, or a TLS handshake that failed, with what to do about it.
public struct TLSError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The TLS contexts of one native stack, built from the PEM files its config names and
/// rebuilt when they change on disk: the files are looked at when a connection starts, at
/// most once per `reloadCheck`. A change that does not load (a half-written file, a key
/// that does not match) is logged and the previous contexts stay in use; connections
/// already up keep the certificate they started with.
public final class CertificateManager: Sendable {
    /// What one side of a new link uses: the context and the SHA-256 fingerprint of the
    /// certificate it presents (bound into the native handshake).
    public struct Side: Sendable {
        public let context: NIOSSLContext
        public let fingerprint: [UInt8]
    }

    struct Loaded {
        var trust: [NIOSSLCertificate]
        var server: Side
        /// Client sides by the identity they present (the stack's, or a route's).
        var clients: [CertificateFiles: Side]
    }

    struct State {
        var loaded: Loaded
        /// Modification dates of every file in use, as last loaded.
        var stamps: [String: Date]
        var lastCheck: ContinuousClock.Instant
    }

    let settings: TLSSettings
    let logger: Logger
    let state: Mutex<State>

    public init(settings: TLSSettings, logger: Logger) throws {
        self.settings = settings
        self.logger = logger
        let (loaded, stamps) = try Self.load(settings, identities: [settings.identity])
        state = Mutex(State(loaded: loaded, stamps: stamps, lastCheck: .now))
    }

    /// For an accepted link: the stack's certificate, and a peer certificate required.
    public func serverSide() -> Side {
        reloadIfChanged()
        return state.withLock { $0.loaded.server }
    }

    /// For a dialled link, presenting `identity` (a route's certificate) or the stack's.
    public func clientSide(presenting identity: CertificateFiles?) throws -> Side {
        reloadIfChanged()
        let identity = identity ?? settings.identity
        if let side = state.withLock({ $0.loaded.clients[identity] }) { return side }
        let trust = state.withLock { $0.loaded.trust }
        let (side, stamps) = try Self.clientSide(identity, trust: trust)
        state.withLock { state in
            state.loaded.clients[identity] = side
            state.stamps.merge(stamps) { $1 }
        }
        return side
    }

    func reloadIfChanged() {
        let now = ContinuousClock.now
        let (due, stamps, identities) = state.withLock { state -> (Bool, [String: Date], [CertificateFiles]) in
            let due = now - state.lastCheck >= .nanoseconds(settings.reloadCheck.nanoseconds)
            if due { state.lastCheck = now }
            return (due, state.stamps, Array(state.loaded.clients.keys))
        }
        guard due, stamps.contains(where: { Self.modified($0.key) != $0.value }) else { return }
        do {
            let (loaded, newStamps) = try Self.load(settings, identities: identities)
            state.withLock {
                $0.loaded = loaded
                $0.stamps = newStamps
            }
            logger.notice("TLS files changed on disk: new connections use them (live ones keep theirs)")
        } catch {
            logger.error("TLS files changed on disk but do not load (\(error)); still using the previous ones")
        }
    }

    static func load(_ settings: TLSSettings, identities: [CertificateFiles]) throws -> (Loaded, [String: Date]) {
        let trust = try certificates(settings.trust, role: "trust")
        var stamps = [settings.trust: modified(settings.trust)]
        let (chain, key, fingerprint) = try identity(settings.identity)
        for path in [settings.identity.certificate, settings.identity.key] { stamps[path] = modified(path) }
        var server = TLSConfiguration.makeServerConfigurationWithMTLS(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key), trustRoots: .certificates(trust))
        server.minimumTLSVersion = .tlsv12
        let serverSide = Side(context: try context(server, settings.identity), fingerprint: fingerprint)
        var clients: [CertificateFiles: Side] = [:]
        for files in Set(identities + [settings.identity]) {
            let (side, fileStamps) = try clientSide(files, trust: trust)
            clients[files] = side
            stamps.merge(fileStamps) { $1 }
        }
        return (Loaded(trust: trust, server: serverSide, clients: clients), stamps)
    }

    static func clientSide(_ files: CertificateFiles, trust: [NIOSSLCertificate]) throws -> (Side, [String: Date]) {
        let (chain, key, fingerprint) = try identity(files)
        var client = TLSConfiguration.makeClientConfiguration()
        client.minimumTLSVersion = .tlsv12
        client.certificateVerification = .noHostnameVerification
        client.trustRoots = .certificates(trust)
        client.certificateChain = chain.map { .certificate($0) }
        client.privateKey = .privateKey(key)
        let side = Side(context: try context(client, files), fingerprint: fingerprint)
        return (side, [files.certificate: modified(files.certificate), files.key: modified(files.key)])
    }

    static func identity(_ files: CertificateFiles) throws -> ([NIOSSLCertificate], NIOSSLPrivateKey, [UInt8]) {
        let chain = try certificates(files.certificate, role: "certificate")
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: files.key, format: .pem)
        } catch {
            throw TLSError("cannot read the private key \(files.key) (\(error)): it must be a PEM private key")
        }
        return (chain, key, try fingerprint(chain[0]))
    }

    static func certificates(_ path: String, role: String) throws -> [NIOSSLCertificate] {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw TLSError("cannot read the \(role) file \(path) (\(error)): it must hold PEM certificates")
        }
        guard !chain.isEmpty else { throw TLSError("the \(role) file \(path) holds no PEM certificate") }
        return chain
    }

    static func context(_ configuration: TLSConfiguration, _ files: CertificateFiles) throws -> NIOSSLContext {
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw TLSError("the certificate \(files.certificate) and the key \(files.key) do not make a TLS identity (\(error)); is it the key of that certificate?")
        }
    }

    public static func isTLSFailure(_ error: any Error) -> Bool { error is NIOSSLError || error is BoringSSLError }

    /// A TLS failure in words an operator can act on (other errors unchanged).
    public static func explain(_ error: any Error) -> any Error {
        guard isTLSFailure(error) else { return error }
        let text = "\(error)"
        if text.contains("CERTIFICATE_VERIFY_FAILED") || text.contains("certificate verify failed") {
            return TLSError("TLS handshake failed: the peer's certificate is not trusted (it does not chain to this stack's tls.trust) [\(text)]")
        }
        if text.contains("CERTIFICATE") || text.contains("ALERT") {
            return TLSError(
                "TLS handshake failed: the peer refused this node's certificate (it does not chain to the peer's trusted authorities, or none was sent) [\(text)]")
        }
        return TLSError("TLS failed: \(text)")
    }

    /// SHA-256 of the certificate's DER bytes.
    public static func fingerprint(_ certificate: NIOSSLCertificate) throws -> [UInt8] {
        Array(SHA256.hash(data: try certificate.toDERBytes()))
    }

    /// The file's modification date (`distantPast` when it cannot be read).
    static func modified(_ path: String) -> Date {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date ?? .distantPast
    }
}
