import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A stack's listening socket, kept listening. Each accepted socket is first shown to
/// `accepts`, before any byte is read (false closes it at once: a blocked address, a full
/// node), then handed to `setUp` to get its handler.
///
/// `start()` binds the socket but accepts nothing until `open()`: peers that connect in
/// between wait in the kernel's backlog. A node opens its acceptors once the processes
/// peers address exist, so a peer's first messages (sent the moment it connects when
/// it redials with messages retained) never arrive before their receivers.
///
/// When the listening socket closes without `stop()` (the network layer failed under
/// the stack), `failed` is told why and the socket is bound again on the same address and
/// port, with backoff, until that works; `restored` is told then. Established
/// connections do not depend on it and go on; whatever decides `accepts` (the access
/// rules) lives outside and applies to the new socket as it did to the old.
public final class Acceptor: Sendable {
    public struct Events: Sendable {
        public var failed: @Sendable (_ reason: String) -> Void
        public var restored: @Sendable (_ address: SocketAddress) -> Void
        public init(failed: @escaping @Sendable (String) -> Void, restored: @escaping @Sendable (SocketAddress) -> Void) {
            self.failed = failed
            self.restored = restored
        }
    }

    struct State {
        var channel: (any Channel)?
        var stopped = false
        /// Set by `open()`: the socket accepts (also once bound again after a failure).
        var open = false
    }

    let group: any EventLoopGroup
    let host: String
    let port: Int
    let accepts: @Sendable (any Channel) -> Bool
    let setUp: @Sendable (any Channel) throws -> Void
    let events: Events
    let logger: Logger
    let state = Mutex(State())
    /// Backoff between attempts to bind again.
    static let firstRetry = TimeAmount.milliseconds(10)
    static let lastRetry = TimeAmount.seconds(2)

    public init(
        group: any EventLoopGroup, host: String, port: Int, events: Events, logger: Logger, accepts: @escaping @Sendable (any Channel) -> Bool,
        setUp: @escaping @Sendable (any Channel) throws -> Void
    ) {
        self.group = group
        self.host = host
        self.port = port
        self.accepts = accepts
        self.setUp = setUp
        self.events = events
        self.logger = logger
    }

    /// The listening socket while there is one.
    public var channel: (any Channel)? { state.withLock { $0.channel } }

    /// Binds the socket; returns the bound address (the real port for port 0). Nothing is
    /// accepted until `open()`.
    public func start() async throws -> SocketAddress {
        let channel = try await bind(port: port)
        return channel.localAddress!
    }

    /// Starts accepting the connections waiting in the backlog and every later one.
    public func open() {
        let channel = state.withLock { state -> (any Channel)? in
            state.open = true
            return state.channel
        }
        // A socket closing meanwhile is bound again open.
        _ = channel?.setOption(.autoRead, value: true)
    }

    /// Closes the socket for good.
    public func stop() async {
        let channel = state.withLock { state -> (any Channel)? in
            state.stopped = true
            return state.channel
        }
        try? await channel?.close()
    }

    func bind(port: Int) async throws -> any Channel {
        let accepts = self.accepts
        let setUp = self.setUp
        let channel = try await ServerBootstrap(group: group)
            // Accepts once open (the socket is accepted from only while it reads).
            .serverChannelOption(.autoRead, value: false)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard accepts(channel) else {
                        channel.close(promise: nil)
                        return
                    }
                    try setUp(channel)
                }
            }
            .bind(host: host, port: port)
            .get()
        let (stopped, open) = state.withLock { state -> (Bool, Bool) in
            if !state.stopped { state.channel = channel }
            return (state.stopped, state.open)
        }
        if stopped {
            try? await channel.close()
            throw ChannelError.ioOnClosedChannel
        }
        if open { try await channel.setOption(.autoRead, value: true).get() }
        let address = channel.localAddress!
        channel.closeFuture.whenComplete { _ in self.closed(channel, address: address) }
        return channel
    }

    /// The socket closed: unless `stop()` closed it, report and bind it again.
    func closed(_ channel: any Channel, address: SocketAddress) {
        let unexpected = state.withLock { state -> Bool in
            guard state.channel === channel else { return false }
            state.channel = nil
            return !state.stopped
        }
        guard unexpected else { return }
        let reason = "the listening socket on \(host):\(address.port ?? port) closed unexpectedly; binding it again (connections already established go on)"
        logger.critical("\(reason)")
        events.failed(reason)
        Task { await self.rebind(port: address.port ?? port) }
    }

    func rebind(port: Int) async {
        var delay = Self.firstRetry
        var attempt = 0
        while !state.withLock({ $0.stopped }) {
            attempt += 1
            do {
                let channel = try await bind(port: port)
                logger.notice("listening on \(host):\(port) again after \(attempt) attempt(s)")
                events.restored(channel.localAddress!)
                return
            } catch {
                if attempt == 1 || attempt % 10 == 0 {
                    logger.error("cannot bind \(host):\(port) again (attempt \(attempt)): \(error); retrying, at most every \(Self.lastRetry.nanoseconds / 1_000_000_000) s")
                }
            }
            try? await Task.sleep(for: .nanoseconds(delay.nanoseconds))
            delay = min(delay * 2, Self.lastRetry)
        }
    }
}

/// Connects to `host:port` (TCP_NODELAY, a connect deadline of `timeout`), sets the
/// channel's pipeline up with `initialize` on its event loop, and returns the channel; a
/// failed connect fails `promise` (which the pipeline completes once its handshake is
/// done) and returns nil.
public func dial<Value>(
    group: any EventLoopGroup, host: String, port: Int, timeout: TimeAmount, failing promise: EventLoopPromise<Value>,
    initialize: @escaping @Sendable (ChannelPipeline.SynchronousOperations) throws -> Void
) async -> (any Channel)? {
    do {
        return try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try initialize(channel.pipeline.syncOperations) }
            }
            .connect(host: host, port: port)
            .get()
    } catch {
        promise.fail(error)
        return nil
    }
}
