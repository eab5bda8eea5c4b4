import NIOCore
import NIOPosix
import Testing

@testable import JunctionTransport

@Suite("Busy polling")
struct BusyPollTests {
    @Test("a loop polls after network activity and sleeps again once its window has passed quietly")
    func pollsThenSleeps() async throws {
        let group = BusyPoll.eventLoopGroup(threads: 1, window: .milliseconds(2), backoff: .zero)
        let loop = group.next()
        #expect(try await loop.submit { BusyPoll.isPolling }.get() == false, "a quiet loop sleeps")
        #expect(try await loop.submit { BusyPoll.touch(loop); return BusyPoll.isPolling }.get(), "activity starts polling")
        let later = try await loop.submit { BusyPoll.touch(loop) }.flatMap {
            // Checked after the poll steps due before it, which end the window.
            loop.scheduleTask(in: .milliseconds(3)) { BusyPoll.isPolling }.futureResult
        }.get()
        #expect(later == false, "2 ms after the last activity the loop sleeps again")
        try await group.shutdownGracefully()
    }

    @Test("a polling loop looks at its sockets between poll steps: steps do not chain within a tick")
    func stepsEndTheirTick() async throws {
        // A step queued 1 us ahead is often due before NIO checks for due tasks again;
        // had the steps been allowed to chain (up to 32 a tick, as before), the loop read
        // its sockets once every 60-100 us and an echo round trip took 4x as long.
        let group = BusyPoll.eventLoopGroup(threads: 1, window: .seconds(60), backoff: .zero)
        let loop = group.next()
        let most = try await loop.submit { BusyPoll.touch(loop) }.flatMap {
            loop.scheduleTask(in: .milliseconds(50)) { BusyPoll.current.currentValue?.mostStepsInATick ?? -1 }.futureResult
        }.get()
        // Each further step in a tick is queued as far ahead as the tick's steps took, so
        // a chain of n steps needs n - 2 ever longer stalls in a row.
        #expect(most >= 1, "the loop polled")
        #expect(most <= 8, "at most a few poll steps a tick, not \(most)")
        try await group.shutdownGracefully()
    }

    @Test("a polling loop takes flushes from other threads and runs them; a sleeping loop refuses them (the sender then wakes it)")
    func handOff() async throws {
        let nothing: @Sendable () -> Void = {}
        // A window far longer than any stall of a loaded test machine between the touch
        // and the hand-off below.
        let group = BusyPoll.eventLoopGroup(threads: 1, window: .seconds(60), backoff: .zero)
        let loop = group.next()
        let beforePolling = BusyPoll.handOff(nothing, to: loop)
        #expect(beforePolling == false, "a loop that never polled")
        try await loop.submit { BusyPoll.touch(loop) }.get()
        let ran = loop.makePromise(of: Bool.self)
        let taken = BusyPoll.handOff({ ran.succeed(loop.inEventLoop) }, to: loop)
        #expect(taken, "a polling loop takes it")
        if !taken { ran.fail(ChannelError.ioOnClosedChannel) }
        #expect(try await ran.futureResult.get(), "and runs it on the loop")
        for _ in 0..<5 {
            let done = loop.makePromise(of: Void.self)
            let handed = BusyPoll.handOff({ BusyPoll.touch(loop); done.succeed() }, to: loop)
            #expect(handed)
            if !handed { done.succeed() }
            try await done.futureResult.get()
        }
        let queued = try await loop.submit { BusyPoll.current.currentValue?.queuedSteps ?? -1 }.get()
        #expect(queued == 1, "flushes that write (and so touch the loop) do not start more chains of poll steps")
        // NIO runs due tasks before it polls again; steps that come due faster than they
        // run (this debug build) must not keep the loop, or its shutdown, waiting for the
        // window to end.
        let closing = ContinuousClock.now
        try await group.shutdownGracefully()
        #expect(ContinuousClock.now - closing < .seconds(30), "shut down while polling, not after the 60 s window")

        let brief = BusyPoll.eventLoopGroup(threads: 1, window: .milliseconds(2), backoff: .zero)
        let briefLoop = brief.next()
        let asleep = try await briefLoop.submit { BusyPoll.touch(briefLoop) }.flatMap {
            briefLoop.scheduleTask(in: .milliseconds(3)) { BusyPoll.isPolling }.futureResult
        }.get()
        #expect(asleep == false)
        let afterWindow = BusyPoll.handOff(nothing, to: briefLoop)
        #expect(afterWindow == false, "a loop whose window has passed")
        try await brief.shutdownGracefully()

        let other = BusyPoll.eventLoopGroup(threads: 1, window: .zero)
        let plain = BusyPoll.handOff(nothing, to: other.next())
        #expect(plain == false, "a loop of a plain group")
        try await other.shutdownGracefully()
    }

    @Test("a loop of a group made without a window never polls")
    func plainGroup() async throws {
        let group = BusyPoll.eventLoopGroup(threads: 1, window: .zero)
        let loop = group.next()
        #expect(try await loop.submit { BusyPoll.touch(loop); return BusyPoll.isPolling }.get() == false)
        try await group.shutdownGracefully()
    }
}
