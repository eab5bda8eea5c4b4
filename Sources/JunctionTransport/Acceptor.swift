import NIOCore
import NIOPosix

/// Binds a stack's listening socket. Each accepted socket is first shown to `accepts`,
/// before any byte is read (false closes it at once: a blocked address, a full node),
/// then handed to `setUp` to get its handler.
public func bindAcceptor(
    group: any EventLoopGroup, host: String, port: Int, accepts: @escaping @Sendable (any Channel) -> Bool,
    setUp: @escaping @Sendable (any Channel) throws -> Void
) async throws -> any Channel {
    try await ServerBootstrap(group: group)
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
}
