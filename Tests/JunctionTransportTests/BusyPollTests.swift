import NIOCore
import NIOPosix
import Testing

@testable import JunctionTransport

@Suite("Busy polling")
struct BusyPollTests {
    @Test("a loop polls after network activity and sleeps again once its window has passed quietly")
    func pollsThenSleeps() async throws {
        let group = BusyPoll.eventLoopGroup(threads: 1, window: .milliseconds(2))
        let loop = group.next()
        try await loop.submit {}.get()
        #expect(try await loop.submit { BusyPoll.isPolling }.get() == false, "a quiet loop sleeps")
        #expect(try await loop.submit { BusyPoll.touch(loop); return BusyPoll.isPolling }.get(), "activity starts polling")
        let later = try await loop.submit { BusyPoll.touch(loop) }.flatMap {
            // Checked after the poll steps due before it, which end the window.
            loop.scheduleTask(in: .milliseconds(3)) { BusyPoll.isPolling }.futureResult
        }.get()
        #expect(later == false, "2 ms after the last activity the loop sleeps again")
        try await group.shutdownGracefully()
    }

    @Test("a loop of a group made without a window never polls")
    func plainGroup() async throws {
        let group = BusyPoll.eventLoopGroup(threads: 1, window: .zero)
        let loop = group.next()
        #expect(try await loop.submit { BusyPoll.touch(loop); return BusyPoll.isPolling }.get() == false)
        try await group.shutdownGracefully()
    }
}
