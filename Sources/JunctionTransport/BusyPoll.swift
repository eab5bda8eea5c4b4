#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import Synchronization

/// Keeps an event loop polling its sockets without sleeping for a short window after
/// network activity, as BEAM's schedulers busy-wait before they sleep.
///
/// On a virtual machine, waking a thread that sleeps in `epoll_wait` costs tens of
/// microseconds (the idle vCPU halts, and the sender's wake-up is an interrupt to it):
/// measured here, a blocking TCP ping-pong on loopback takes 55 us per round trip and a
/// polling one 7 us. So for `window` after a link reads or writes, the loop keeps a task
/// due every microsecond, which makes it poll with a zero timeout instead of sleeping;
/// a quiet loop sleeps as before. The cost is CPU while the window lasts.
///
/// While a loop polls, other threads hand it flushes (`EventLoop.scheduleFlush`) through
/// a queue its poll step drains, instead of `execute`, which writes the loop's eventfd:
/// a sender on another core pays no syscall per batch.
///
/// The loop's group must be made by `BusyPoll.eventLoopGroup(threads:window:)`: the poll
/// rides on the loop's tick delegate, which holds each tick until the next poll is due.
public final class BusyPoll: NIOEventLoopMetricsDelegate, Sendable {
    /// What one loop thread knows; only touched on that thread (hence unchecked).
    final class LoopState: @unchecked Sendable {
        let window: TimeAmount
        var lastActivity = NIODeadline.uptimeNanoseconds(0)
        /// When the queued poll step is due; nil while the loop may sleep.
        var nextStep: NIODeadline?
        /// Poll steps queued on the loop: one while it polls, never more.
        var queuedSteps = 0
        /// Steps run in the current tick, and when the first of them ran. NIO runs tasks
        /// until none is due before it looks at its sockets, and a step queued `interval`
        /// ahead is often due again by the time the loop checks (on a 2 vCPU Xeon under
        /// KVM, always): the steps then chain within one tick and the loop reads its
        /// sockets only when the chain ends. With 32 steps allowed per tick, it read them
        /// once every 60-100 us and an echo round trip took 206 us instead of 47. So a
        /// second step in a tick is queued as far ahead as the tick's steps have taken so
        /// far, which ends the tick: each further step in the same tick doubles that.
        var stepsThisTick = 0
        var firstStepThisTick = NIODeadline.uptimeNanoseconds(0)
        /// The most steps any tick of this loop has run (what the rule above bounds).
        var mostStepsInATick = 0
        /// No polling before this: the core was wanted by another thread.
        var yieldUntil = NIODeadline.uptimeNanoseconds(0)
        let handoff = Handoff()
        /// Whether `handoff` is in the registry, where senders find it.
        var registered = false

        init(window: TimeAmount) { self.window = window }
    }

    /// Flushes handed to a polling loop by other threads; taken only while it polls.
    final class Handoff: Sendable {
        struct State {
            var polling = false
            var flushes: [@Sendable () -> Void] = []
        }
        let state = Mutex(State())

        /// Queues `flush` if the loop is polling (it runs within a poll step).
        func take(_ flush: @escaping @Sendable () -> Void) -> Bool {
            state.withLock { state in
                guard state.polling else { return false }
                state.flushes.append(flush)
                return true
            }
        }

        /// The queued flushes; from now on flushes are taken only if `polling`.
        func drain(polling: Bool) -> [@Sendable () -> Void] {
            state.withLock { state in
                state.polling = polling
                guard !state.flushes.isEmpty else { return [] }
                defer { state.flushes = [] }
                return state.flushes
            }
        }
    }

    /// A polling loop's handoff, found by the loop's identity; `loop` is weak so that a
    /// new loop at a dead one's address is not taken for it.
    struct Registered {
        weak var loop: AnyObject?
        let handoff: Handoff
    }
    static let registry = Mutex<[ObjectIdentifier: Registered]>([:])

    /// Hands `flush` to `loop` if it is polling; false if it sleeps (then `execute` it).
    public static func handOff(_ flush: @escaping @Sendable () -> Void, to loop: any EventLoop) -> Bool {
        let handoff = registry.withLock { registry -> Handoff? in
            guard let entry = registry[ObjectIdentifier(loop)], entry.loop === loop else { return nil }
            return entry.handoff
        }
        return handoff?.take(flush) ?? false
    }

    static func register(_ loop: any EventLoop, _ handoff: Handoff) {
        registry.withLock { registry in
            registry = registry.filter { $0.value.loop != nil }
            registry[ObjectIdentifier(loop)] = Registered(loop: loop, handoff: handoff)
        }
    }

    /// The state of the loop running on the current thread, if that loop polls.
    static let current = ThreadSpecificVariable<LoopState>()
    /// How often a polling loop looks at its sockets.
    static let interval = TimeAmount.microseconds(1)
    /// A yield that took longer than this gave the core to a thread with work.
    static let contended = TimeAmount.microseconds(20)
    /// How long a loop whose core was wanted sleeps as usual before it polls again.
    let backoff: TimeAmount

    init(backoff: TimeAmount) { self.backoff = backoff }

    /// An event-loop group whose loops poll for `window` after network activity; a plain
    /// group when `window` is zero. (`backoff` zero keeps polling however busy the cores
    /// are, for tests on a loaded machine.)
    public static func eventLoopGroup(threads: Int, window: TimeAmount, backoff: TimeAmount = .milliseconds(2)) -> MultiThreadedEventLoopGroup {
        guard window > .zero else { return MultiThreadedEventLoopGroup(numberOfThreads: threads) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads, metricsDelegate: BusyPoll(backoff: backoff))
        // Each loop's state is in place before any task a caller submits (tasks run in order).
        for loop in group.makeIterator() {
            loop.execute { current.currentValue = LoopState(window: window) }
        }
        return group
    }

    /// Marks network activity on `loop` (the current thread's): it keeps polling for its
    /// window from now. Costs a thread-local read on loops that do not poll.
    @inline(__always)
    public static func touch(_ loop: any EventLoop) {
        guard let state = current.currentValue else { return }
        state.lastActivity = .now()
        if !state.registered {
            register(loop, state.handoff)
            state.registered = true
        }
        if state.nextStep == nil { step(loop, state) }
    }

    /// Whether the loop on the current thread is polling rather than sleeping.
    static var isPolling: Bool { current.currentValue?.nextStep != nil }

    /// One poll step: runs the flushes handed over, and while the window lasts queues the
    /// next step `interval` ahead. Runs on the loop, as the queued task or from `touch`
    /// when none is queued.
    static func step(_ loop: any EventLoop, _ state: LoopState, queued: Bool = false) {
        if queued { state.queuedSteps -= 1 }
        state.stepsThisTick += 1
        let now = NIODeadline.now()
        if state.stepsThisTick == 1 { state.firstStepThisTick = now }
        let polling = now < state.lastActivity + state.window && now >= state.yieldUntil
        // A flush that writes touches the loop; `nextStep` still set keeps that touch
        // from starting a second chain of steps.
        for flush in state.handoff.drain(polling: polling) { flush() }
        state.nextStep = nil
        guard polling else { return }
        let due = now + (state.stepsThisTick == 1 ? interval : max(interval, now - state.firstStepThisTick))
        state.nextStep = due
        state.queuedSteps += 1
        loop.scheduleTask(deadline: due) { step(loop, state, queued: true) }
    }

    /// Runs after every tick of a loop of this group, before it polls: while a poll step
    /// is queued, waits until it is due (`interval` after the last step, or as long as
    /// a slow tick's steps took), so the loop polls with a
    /// zero timeout rather than sleeping in a timer. It waits by yielding the core: when
    /// that gives the core to a thread with work (a sender deflating, say), the cores are
    /// busy anyway, and the loop stops polling for `backoff`.
    public func processedTick(info: NIOEventLoopTickInfo) {
        guard let state = Self.current.currentValue else { return }
        state.mostStepsInATick = max(state.mostStepsInATick, state.stepsThisTick)
        state.stepsThisTick = 0
        guard let due = state.nextStep else { return }
        var now = NIODeadline.now()
        while now < due {
            sched_yield()
            let after = NIODeadline.now()
            if after - now > Self.contended, backoff > .zero {
                state.yieldUntil = after + backoff
                return
            }
            now = after
        }
    }
}
