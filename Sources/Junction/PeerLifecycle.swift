import JunctionCore

/// What happens to one peer's connection after it is lost, as a state machine without
/// I/O or clocks: the node reports what happened, the machine answers with what to do
/// next. Delays come out as durations and jitter comes from the caller, so tests drive
/// it step by step.
struct PeerLifecycle: Sendable, Hashable {
    enum State: Sendable, Hashable {
        case connected
        /// Waiting to make attempt `attempt` (1-based).
        case retrying(attempt: Int)
        /// Closed gracefully: no retry until `connectSystem`.
        case closed
        /// Every attempt failed: the queue was dropped.
        case dropped
    }

    enum Action: Sendable, Hashable {
        /// Dial again after this long.
        case retry(after: Duration)
        /// Give up: drop what is queued and report it.
        case drop
    }

    let settings: ReconnectSettings
    private(set) var state = State.connected

    init(settings: ReconnectSettings) { self.settings = settings }

    /// The connection was lost; `jitter` is a random number in 0..<1.
    mutating func lost(jitter: Double) -> Action {
        next(attempt: 1, jitter: jitter)
    }

    /// The dial of the current attempt failed.
    mutating func attemptFailed(jitter: Double) -> Action {
        guard case .retrying(let attempt) = state else { return .drop }
        return next(attempt: attempt + 1, jitter: jitter)
    }

    mutating func connected() { state = .connected }

    mutating func closedGracefully() { state = .closed }

    mutating func next(attempt: Int, jitter: Double) -> Action {
        guard attempt <= settings.attempts else {
            state = .dropped
            return .drop
        }
        state = .retrying(attempt: attempt)
        return .retry(after: Self.delay(attempt: attempt, settings: settings, jitter: jitter))
    }

    /// `base * 2^(attempt-1)`, capped, moved by up to a fifth either way.
    static func delay(attempt: Int, settings: ReconnectSettings, jitter: Double) -> Duration {
        let doubled = Double(settings.base.nanoseconds) * pow2(attempt - 1)
        let capped = min(doubled, Double(settings.cap.nanoseconds))
        let factor = 0.8 + 0.4 * min(max(jitter, 0), 1)
        return .nanoseconds(Int64(capped * factor))
    }

    static func pow2(_ exponent: Int) -> Double {
        exponent >= 62 ? Double(Int64.max) : Double(Int64(1) << exponent)
    }
}
