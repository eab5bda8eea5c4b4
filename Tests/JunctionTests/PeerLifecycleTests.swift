import JunctionCore
import Testing

@testable import Junction

@Suite("Peer lifecycle")
struct PeerLifecycleTests {
    let settings = ReconnectSettings(attempts: 4, base: .milliseconds(100), cap: .milliseconds(500))

    @Test("a lost connection is retried with exponential backoff up to the cap, then dropped after the last attempt")
    func backoffThenDrop() {
        var lifecycle = PeerLifecycle(settings: settings)
        #expect(lifecycle.lost(jitter: 0.5) == .retry(after: .milliseconds(100)))
        #expect(lifecycle.attemptFailed(jitter: 0.5) == .retry(after: .milliseconds(200)))
        #expect(lifecycle.attemptFailed(jitter: 0.5) == .retry(after: .milliseconds(400)))
        #expect(lifecycle.attemptFailed(jitter: 0.5) == .retry(after: .milliseconds(500)))
        #expect(lifecycle.state == .retrying(attempt: 4))
        #expect(lifecycle.attemptFailed(jitter: 0.5) == .drop)
        #expect(lifecycle.state == .dropped)
    }

    @Test("jitter moves each delay by at most a fifth either way")
    func jitter() {
        var low = PeerLifecycle(settings: settings)
        var high = PeerLifecycle(settings: settings)
        #expect(low.lost(jitter: 0) == .retry(after: .milliseconds(80)))
        #expect(high.lost(jitter: 0.75) == .retry(after: .milliseconds(110)))
    }

    @Test("a reconnect resets the attempts; a graceful close is not retried; zero attempts drops at once")
    func resetsAndClose() {
        var lifecycle = PeerLifecycle(settings: settings)
        _ = lifecycle.lost(jitter: 0.5)
        _ = lifecycle.attemptFailed(jitter: 0.5)
        lifecycle.connected()
        #expect(lifecycle.lost(jitter: 0.5) == .retry(after: .milliseconds(100)))
        lifecycle.closedGracefully()
        #expect(lifecycle.state == .closed)
        var never = PeerLifecycle(settings: ReconnectSettings(attempts: 0))
        #expect(never.lost(jitter: 0.5) == .drop)
    }
}
