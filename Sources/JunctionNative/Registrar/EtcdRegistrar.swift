import Foundation
import JunctionCore
import Logging
import NIOCore
import Synchronization

/// A native stack's registrar on an etcd cluster (`registrar: {kind: etcd, etcd: ...}`).
///
/// Registration: a lease of `leaseTTL`, and this node's record put under
/// `<namespace>/<cluster>/nodes/<name>` with it, in a transaction that succeeds only if
/// the key does not exist, so a name is unique in the cluster. The lease is renewed every
/// third of its TTL; when etcd says it is gone, a new lease takes the key over in one
/// transaction while the key is still this node's record, or takes it again if it is free.
/// A graceful shutdown revokes the lease: the record disappears at once.
///
/// Resolution: a cache of every record of the cluster, filled by a list and kept fresh by
/// a watch from the next revision (a compacted revision or a broken stream: list again),
/// so a resolve is a memory read; a miss reads the key from etcd directly. While etcd
/// cannot be reached or has no quorum, resolves are served from the cache, which is
/// marked stale, and the registration holds as long as its lease does. When etcd is back,
/// all of it resumes; nothing needs a restart.
public final class EtcdRegistrar: NativeRegistrar {
    /// What the watch saw of the cluster, and how fresh the cache is.
    public enum Event: Sendable, Hashable {
        case joined(String)
        case left(String)
        /// The cache cannot be kept fresh (etcd unreachable or without quorum): resolves
        /// are served from it, stale.
        case stale(reason: String)
        /// etcd answers again; the cache is fresh.
        case fresh
    }

    /// A node as this registrar writes and reads it (format 1).
    public struct Record: Sendable, Hashable, Codable {
        public var format: Int
        public var node: String
        public var stack: String
        public var host: String
        public var port: Int
        public var tls: Bool
        public var handshakeVersion: Int
        public var protocolVersion: Int
    }

    struct State: Sendable {
        var cache: [String: Record] = [:]
        var listed = false
        /// The revision the cache reflects.
        var revision: Int64 = 0
        var staleReason: String?
        var record: Record?
        var lease: Int64?
        /// The keep-alive, on an event loop.
        var keeper: RepeatedTask?
        var renewalFailingSince: NIODeadline?
        var tasks: [Task<Void, Never>] = []
        var watch: (any Channel)?
        var watchPaused = false
        var resume: CheckedContinuation<Void, Never>?
        var shuttingDown = false
    }

    public let stack: String
    let settings: EtcdSettings
    let client: EtcdClient
    let logger: Logger
    let state = Mutex(State())
    public let events: AsyncStream<Event>
    let sink: AsyncStream<Event>.Continuation

    public init(stack: String, settings: EtcdSettings, group: any EventLoopGroup, logger: Logger) throws {
        self.stack = stack
        self.settings = settings
        self.client = try EtcdClient(settings: settings, group: group)
        var logger = logger
        logger[metadataKey: "junction.stack"] = "\(stack)"
        self.logger = logger
        (events, sink) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(1024))
    }

    var interval: Duration { .nanoseconds(settings.leaseTTL.nanoseconds / 3) }
    var where_: String { "etcd cluster '\(settings.cluster)' (\(settings.endpoints.joined(separator: ", ")))" }
    func key(_ name: String) -> String { settings.prefix + name }

    /// Lists the cluster and starts following it (the watch and the health check).
    public func start() async {
        do { try await list(compacted: nil) } catch { markStale("listing \(settings.prefix) failed: \(error)") }
        let watch = Task { await self.follow() }
        let health = Task { await self.checkHealth() }
        state.withLock { $0.tasks += [watch, health] }
    }

    /// True while resolves come from a cache etcd cannot refresh.
    public var isStale: Bool { state.withLock { $0.staleReason != nil } }

    /// The nodes in the cache.
    public var nodes: [String] { state.withLock { $0.cache.keys.sorted() } }

    public func summary(for node: NodeName?) -> String {
        let stale = state.withLock { $0.staleReason }
        return "\(where_), key \(node.map { key($0.description) } ?? settings.prefix)\(stale.map { "; cache stale: \($0)" } ?? "")"
    }

    // MARK: - registration

    public func register(name: NodeName, host: String, port: Int, tls: Bool, handshakeVersion: Int, protocolVersion: Int) async throws {
        let record = Record(
            format: 1, node: name.description, stack: stack, host: host, port: port, tls: tls, handshakeVersion: handshakeVersion, protocolVersion: protocolVersion)
        state.withLock { $0.record = record }
        let giveUp = ContinuousClock.now + .nanoseconds(settings.leaseTTL.nanoseconds)
        let lease = try await untilAnswered("the lease grant", giveUp: giveUp) { try await self.grant() }
        let value = try Self.encode(record)
        let answer = try await untilAnswered("the registration", giveUp: giveUp) {
            try await self.client.call("/v3/kv/txn", [
                "compare": [["key": EtcdClient.base64(self.key(record.node)), "target": "CREATE", "result": "EQUAL", "create_revision": "0"]],
                "success": [["request_put": ["key": EtcdClient.base64(self.key(record.node)), "value": value, "lease": String(lease)]]],
                "failure": [["request_range": ["key": EtcdClient.base64(self.key(record.node))]]],
            ])
        }
        let current = Self.kvs(inTxn: answer).first
        // An attempt that went unanswered may have been applied: the key then holds this
        // registration's own lease.
        guard answer["succeeded"] as? Bool == true || EtcdClient.int(current?["lease"]) == lease else {
            _ = try? await client.call("/v3/lease/revoke", ["ID": String(lease)])
            let holder = current.flatMap { Self.decode($0["value"]) }
            throw RegistrarError(
                "'\(name)' is already registered in \(where_)\(holder.map { " by the node at \($0.host):\($0.port)" } ?? ""); names are unique in a cluster: give this node another name, or stop the other one"
            )
        }
        state.withLock { $0.lease = lease }
        logger.info("registered '\(name)' in \(where_) as \(key(record.node)), lease \(lease) of \(settings.leaseTTL)")
        startKeepAlive()
    }

    /// Runs `request` again while no etcd endpoint answers it (etcd starting, starved, or
    /// electing a leader), until `giveUp`; etcd's own errors are thrown at once.
    func untilAnswered<T>(_ what: String, giveUp: ContinuousClock.Instant, _ request: () async throws -> T) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await request()
            } catch let error as EtcdError where error.unanswered {
                guard ContinuousClock.now < giveUp else {
                    throw RegistrarError(
                        "\(error) (\(attempt) attempts over \(settings.leaseTTL)); check that etcd runs at \(settings.endpoints.joined(separator: ", ")), or raise the registrar's requestTimeout (\(settings.requestTimeout)) if it is only slow"
                    )
                }
                logger.warning("etcd did not answer \(what) (attempt \(attempt)): \(error); trying again until \(settings.leaseTTL) have passed")
                attempt += 1
                // A refused connection fails at once: pace the attempts.
                try await Task.sleep(for: .milliseconds(min(100 * attempt, 1000)))
            }
        }
    }

    func grant() async throws -> Int64 {
        let answer = try await client.call("/v3/lease/grant", ["TTL": String(settings.leaseTTL.nanoseconds / 1_000_000_000)])
        guard let id = EtcdClient.int(answer["ID"]) else { throw RegistrarError("etcd granted no lease: \(answer)") }
        return id
    }

    /// Renews the lease every third of its TTL, on an event loop: a node whose Swift
    /// concurrency pool is busy still renews in time. When etcd says the lease is gone, a
    /// task takes the key over with a new one.
    func startKeepAlive() {
        let loop = client.group.next()
        let every = TimeAmount.nanoseconds(settings.leaseTTL.nanoseconds / 3)
        let keeper = loop.scheduleRepeatedAsyncTask(initialDelay: every, delay: every) { _ in
            guard let lease = self.state.withLock({ $0.lease }) else { return loop.makeSucceededVoidFuture() }
            return self.client.callOnLoop("/v3/lease/keepalive", ["ID": String(lease)])
                .map { answer in self.renewed(lease: lease, ttl: EtcdClient.int((answer.value["result"] as? [String: Any])?["TTL"]) ?? 0) }
                .recover { error in self.renewalFailed(error) }
        }
        state.withLock { $0.keeper = keeper }
    }

    func renewed(lease: Int64, ttl: Int64) {
        let (failingSince, expired) = state.withLock { state -> (NIODeadline?, Bool) in
            defer { state.renewalFailingSince = nil }
            guard ttl <= 0, state.lease == lease else { return (state.renewalFailingSince, false) }
            state.lease = nil  // no keep-alives for the dead lease while the take-over runs
            return (state.renewalFailingSince, true)
        }
        if let failingSince {
            logger.notice("etcd renewed the lease again after \(String(format: "%.1f", Double((NIODeadline.now() - failingSince).nanoseconds) / 1e9)) s")
        }
        if expired {
            let task = Task { await self.takeOverUntilDone(expired: lease) }
            state.withLock { $0.tasks.append(task) }
        }
        markFresh()
    }

    func renewalFailed(_ error: any Error) {
        let first = state.withLock { state -> Bool in
            defer { if state.renewalFailingSince == nil { state.renewalFailingSince = .now() } }
            return state.renewalFailingSince == nil
        }
        if first {
            logger.warning("cannot renew the registration's lease in \(where_): \(error); it holds for up to \(settings.leaseTTL) after the last renewal")
        }
        markStale("etcd does not renew the lease: \(error)")
    }

    /// Retries the take-over (every third of the TTL) until it succeeds, the name turns
    /// out taken, or the node stops.
    func takeOverUntilDone(expired: Int64) async {
        while !Task.isCancelled, !state.withLock({ $0.shuttingDown }) {
            do {
                try await takeOver(expired: expired)
                return
            } catch {
                logger.warning("could not register again after the lease expired: \(error); retrying")
                try? await Task.sleep(for: interval)
            }
        }
    }

    /// The lease expired: a new one takes the key, in one transaction while the key is
    /// still this node's record (no moment where the name is free), or else if the key is
    /// free. If another node holds the name by now, that is logged as an error.
    func takeOver(expired: Int64) async throws {
        guard let record = state.withLock({ $0.record }) else { return }
        let lease = try await grant()
        let value = try Self.encode(record)
        let key64 = EtcdClient.base64(key(record.node))
        let put: [[String: Any]] = [["request_put": ["key": key64, "value": value, "lease": String(lease)]]]
        var answer = try await client.call("/v3/kv/txn", [
            "compare": [["key": key64, "target": "VALUE", "result": "EQUAL", "value": value]], "success": put,
        ])
        if answer["succeeded"] as? Bool != true {
            answer = try await client.call("/v3/kv/txn", [
                "compare": [["key": key64, "target": "CREATE", "result": "EQUAL", "create_revision": "0"]], "success": put,
            ])
        }
        guard answer["succeeded"] as? Bool == true else {
            _ = try? await client.call("/v3/lease/revoke", ["ID": String(lease)])
            logger.error("the lease of '\(record.node)' expired and another node took the name in \(where_); this node is no longer registered there")
            return
        }
        state.withLock { $0.lease = lease }
        logger.notice("lease \(expired) of '\(record.node)' had expired; registered again with lease \(lease)")
    }

    public func shutdown() async {
        let (tasks, keeper, watch, lease, record) = state.withLock { state in
            state.shuttingDown = true
            defer {
                state.lease = nil
                state.tasks = []
                state.keeper = nil
                state.resume?.resume()
                state.resume = nil
            }
            return (state.tasks, state.keeper, state.watch, state.lease, state.record)
        }
        if let keeper {
            let stopped = client.group.next().makePromise(of: Void.self)
            keeper.cancel(promise: stopped)
            try? await stopped.futureResult.get()
        }
        for task in tasks { task.cancel() }
        watch?.close(promise: nil)
        // No request of this registrar is in flight once shutdown returns (the node's
        // event loops may stop right after).
        for task in tasks { await task.value }
        if let lease {
            // Revoking deletes the record at once; if etcd cannot be reached, the lease
            // expires on its own.
            do {
                _ = try await client.call("/v3/lease/revoke", ["ID": String(lease)])
                logger.info("unregistered '\(record?.node ?? "")' from \(where_)")
            } catch {
                logger.warning("could not revoke the lease (the record goes when it expires, within \(settings.leaseTTL)): \(error)")
            }
        }
        sink.finish()
    }

    // MARK: - resolution

    public func resolve(_ node: NodeName) async throws -> ResolvedRoute {
        if let record = state.withLock({ $0.cache[node.description] }) { return route(record) }
        let answer: [String: Any]
        do { answer = try await client.call("/v3/kv/range", ["key": EtcdClient.base64(key(node.description))]) } catch {
            throw RegistrarError("'\(node)' is not in the cache and \(where_) cannot be asked: \(error)")
        }
        guard let value = (answer["kvs"] as? [[String: Any]])?.first?["value"], let record = Self.decode(value) else {
            throw RegistrarError("'\(node)' is not registered in \(where_) (no key \(key(node.description)))")
        }
        state.withLock { $0.cache[record.node] = record }
        return route(record)
    }

    func route(_ record: Record) -> ResolvedRoute {
        ResolvedRoute(stack: stack, host: record.host, port: record.port, tls: record.tls, handshakeVersion: record.handshakeVersion, protocolVersion: record.protocolVersion)
    }

    /// Replaces the cache with what etcd holds now; reports who joined or left meanwhile.
    func list(compacted: Int64?) async throws {
        let answer = try await client.call("/v3/kv/range", ["key": EtcdClient.base64(settings.prefix), "range_end": EtcdClient.rangeEnd(settings.prefix)])
        let revision = EtcdClient.int((answer["header"] as? [String: Any])?["revision"]) ?? 0
        var fresh: [String: Record] = [:]
        for kv in answer["kvs"] as? [[String: Any]] ?? [] {
            if let record = Self.decode(kv["value"]) { fresh[record.node] = record }
        }
        let (before, announce) = state.withLock { state in
            defer {
                state.cache = fresh
                state.revision = revision
                state.listed = true
            }
            return (state.cache, state.listed)
        }
        if let compacted {
            logger.notice("the watch's revision was compacted (etcd kept \(compacted) and later); listed \(settings.prefix) again at revision \(revision)")
        }
        if announce {
            for name in fresh.keys.sorted() where before[name] == nil { sink.yield(.joined(name)) }
            for name in before.keys.sorted() where fresh[name] == nil { sink.yield(.left(name)) }
        }
        markFresh()
    }

    /// Watches the prefix from the revision after the cache's, applying every change;
    /// lists again after a compaction or a broken stream (reconnecting with backoff).
    func follow() async {
        var delay = Duration.milliseconds(100)
        var relist: Int64?
        // After a broken stream the cache is listed again too: etcd may have been restored
        // from a backup, with revisions the cache never saw.
        var listAgain = false
        while !Task.isCancelled, !state.withLock({ $0.shuttingDown }) {
            await waitWhilePaused()
            let compaction = CompactionSeen()
            do {
                if relist != nil || listAgain || !state.withLock({ $0.listed }) {
                    try await list(compacted: relist)
                    relist = nil
                    listAgain = false
                }
                let start = state.withLock { $0.revision } + 1
                try await client.stream(
                    "/v3/watch",
                    ["create_request": ["key": EtcdClient.base64(settings.prefix), "range_end": EtcdClient.rangeEnd(settings.prefix), "start_revision": String(start)]],
                    opened: { channel in
                        // A pause or shutdown that came before the channel was known closes it now.
                        let closeNow = self.state.withLock { state -> Bool in
                            state.watch = channel
                            return state.shuttingDown || state.watchPaused
                        }
                        if closeNow { channel.close(promise: nil) }
                    },
                    message: { message in
                        guard let result = message["result"] as? [String: Any] else { return }
                        if let compacted = EtcdClient.int(result["compact_revision"]), compacted > 0 {
                            compaction.revision.withLock { $0 = compacted }
                            self.state.withLock { $0.watch?.close(promise: nil) }
                            return
                        }
                        if result["created"] as? Bool == true { compaction.created.store(true, ordering: .relaxed) }
                        self.apply(result)
                    })
                throw EtcdError(code: nil, description: "the watch stream ended")
            } catch {
                if let compacted = compaction.revision.withLock({ $0 }) {
                    relist = compacted
                    continue
                }
                guard !Task.isCancelled, !state.withLock({ $0.shuttingDown || $0.watchPaused }) else { continue }
                listAgain = true
                if compaction.created.load(ordering: .relaxed) { delay = .milliseconds(100) }
                markStale("the watch on \(settings.prefix) broke: \(error)")
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(2))
                continue
            }
        }
    }

    /// What one watch stream reported: a compacted revision, and whether it was created.
    final class CompactionSeen: Sendable {
        let revision = Mutex<Int64?>(nil)
        let created = Atomic(false)
    }

    /// One watch message: its events applied to the cache, in order.
    func apply(_ result: [String: Any]) {
        let revision = EtcdClient.int((result["header"] as? [String: Any])?["revision"]) ?? 0
        var changes: [Event] = []
        state.withLock { state in
            for event in result["events"] as? [[String: Any]] ?? [] {
                guard let kv = event["kv"] as? [String: Any], let fullKey = EtcdClient.text(kv["key"]), fullKey.hasPrefix(settings.prefix) else { continue }
                let name = String(fullKey.dropFirst(settings.prefix.count))
                if (event["type"] as? String) == "DELETE" {
                    if state.cache.removeValue(forKey: name) != nil { changes.append(.left(name)) }
                } else if let record = Self.decode(kv["value"]) {
                    if state.cache.updateValue(record, forKey: record.node) == nil { changes.append(.joined(record.node)) }
                }
                state.revision = max(state.revision, EtcdClient.int(kv["mod_revision"]) ?? 0)
            }
            if result["created"] as? Bool == true || state.revision < revision { state.revision = max(state.revision, revision) }
        }
        for change in changes { sink.yield(change) }
        if result["created"] as? Bool == true { markFresh() }
    }

    /// Without a registration to renew, a read every third of the TTL tells whether etcd
    /// still answers with quorum (a linearizable read needs it).
    func checkHealth() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            guard !Task.isCancelled, state.withLock({ $0.lease == nil && !$0.shuttingDown }) else { continue }
            do {
                _ = try await client.call("/v3/kv/range", ["key": EtcdClient.base64(settings.prefix), "range_end": EtcdClient.rangeEnd(settings.prefix), "count_only": true])
                markFresh()
            } catch {
                markStale("etcd does not answer reads: \(error)")
            }
        }
    }

    func markStale(_ reason: String) {
        let first = state.withLock { state -> Bool in
            defer { state.staleReason = reason }
            return state.staleReason == nil && !state.shuttingDown
        }
        guard first else { return }
        logger.warning("\(where_) cannot be followed (\(reason)); resolves are served from the cache, marked stale, until it answers again")
        sink.yield(.stale(reason: reason))
    }

    func markFresh() {
        let was = state.withLock { state -> Bool in
            defer { state.staleReason = nil }
            return state.staleReason != nil
        }
        guard was else { return }
        logger.notice("\(where_) answers again; the cache is fresh")
        sink.yield(.fresh)
    }

    /// Stops following etcd's changes (the watch connection closes) until `resumeWatch`;
    /// the cache stays as it is. For operators pausing the registrar, and for tests.
    public func pauseWatch() {
        let watch = state.withLock { state -> (any Channel)? in
            state.watchPaused = true
            return state.watch
        }
        watch?.close(promise: nil)
    }

    /// Follows etcd again, from the revision after the cache's.
    public func resumeWatch() {
        state.withLock { state in
            state.watchPaused = false
            state.resume?.resume()
            state.resume = nil
        }
    }

    func waitWhilePaused() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let waiting = state.withLock { state -> Bool in
                guard state.watchPaused, !state.shuttingDown else { return false }
                state.resume = continuation
                return true
            }
            if !waiting { continuation.resume() }
        }
    }

    // MARK: - records

    static func encode(_ record: Record) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return try encoder.encode(record).base64EncodedString()
    }

    static func decode(_ base64: Any?) -> Record? {
        guard let base64 = base64 as? String, let data = Data(base64Encoded: base64) else { return nil }
        return try? JSONDecoder().decode(Record.self, from: data)
    }

    static func kvs(inTxn answer: [String: Any]) -> [[String: Any]] {
        (answer["responses"] as? [[String: Any]] ?? []).compactMap { ($0["response_range"] as? [String: Any])?["kvs"] as? [[String: Any]] }.flatMap { $0 }
    }
}
