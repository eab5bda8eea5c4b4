import DequeModule
import JunctionTerm
import Synchronization

/// A message in a process's mailbox.
public struct Message: Sendable {
    public let payload: Payload

    /// The message as a term (decoded now if it arrived from a peer).
    public func term() throws -> Term { try payload.term() }
}

/// Raised by `ProcessHandle.receive(timeout:)` when nothing arrives in time.
public struct ReceiveTimeout: Error, Sendable, CustomStringConvertible {
    public let timeout: Duration
    public var description: String { "no message arrived within \(timeout)" }
}

/// Raised when receiving from a process that has exited.
public struct ProcessExited: Error, Sendable, CustomStringConvertible {
    public let pid: Pid
    public var description: String { "process \(pid) has exited" }
}

/// A process's queue of messages: any thread delivers, the one owner receives.
/// Unbounded, as in Erlang; senders are paced by their links instead.
final class Mailbox: Sendable {
    struct State: ~Copyable {
        var queue = Deque<Payload>()
        var waiter: CheckedContinuation<Payload?, Never>?
        var closed = false
    }

    let state = Mutex(State())

    /// Adds a message; wakes the owner if it is waiting. Dropped after `close`.
    func deliver(_ payload: Payload) {
        let waiter = state.withLock { state -> CheckedContinuation<Payload?, Never>? in
            guard !state.closed else { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.queue.append(payload)
            return nil
        }
        waiter?.resume(returning: payload)
    }

    /// The next message, or nil once closed or when the task is cancelled.
    nonisolated(nonsending) func next() async -> Payload? {
        // Fast path: a queued message needs no continuation and no cancellation handler.
        if let payload = state.withLock({ $0.queue.popFirst() }) { return payload }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Payload?, Never>) in
                let immediate = state.withLock { state -> Payload?? in
                    if let payload = state.queue.popFirst() { return .some(payload) }
                    if state.closed || Task.isCancelled { return .some(nil) }
                    state.waiter = continuation
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Payload?, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: nil)
        }
    }

    func close() {
        let waiter = state.withLock { state -> CheckedContinuation<Payload?, Never>? in
            state.closed = true
            state.queue.removeAll()
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }
}
