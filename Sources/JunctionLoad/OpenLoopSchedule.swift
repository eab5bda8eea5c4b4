/// When each message of an open-loop sender is due: the i-th at `start + i * interval`.
/// A sender that falls behind sends what is due at once, and each message's latency
/// still counts from when it was due, so a stall shows in the percentiles instead of
/// being hidden (no coordinated omission). Times are nanoseconds on any monotonic clock:
/// tests drive it with their own.
public struct OpenLoopSchedule: Sendable, Hashable {
    public let start: UInt64
    /// Nanoseconds between two messages.
    public let interval: Double

    public init(start: UInt64, ratePerSecond: Double) {
        self.start = start
        self.interval = 1e9 / ratePerSecond
    }

    /// When message `index` (from 0) is due.
    public func due(_ index: Int) -> UInt64 { start + UInt64((Double(index) * interval).rounded()) }

    /// How many messages are due by `now` (sent or not).
    public func dueCount(at now: UInt64) -> Int {
        guard now >= start else { return 0 }
        return Int(Double(now - start) / interval) + 1
    }

    /// The latency of message `index` answered at `now`: from when it was due.
    public func latency(of index: Int, answeredAt now: UInt64) -> UInt64 {
        let due = due(index)
        return now > due ? now - due : 0
    }
}
