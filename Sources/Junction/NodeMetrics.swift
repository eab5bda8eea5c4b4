import CoreMetrics
import JunctionCore
import NIOCore
import Synchronization

/// The node's metrics, made with the swift-metrics factory the node was started with
/// (`/metrics` of the admin endpoint exports them in Prometheus text format). Events count
/// as they happen; traffic and queue depths are read from the connections when
/// `updateMetrics()` runs (before each export) and when a connection ends, so the hot path
/// pays nothing for them.
final class NodeMetrics: Sendable {
    let factory: any MetricsFactory
    let routeLookups: Counter
    let defaultRouteLookups: Counter
    /// Traffic counted so far, per live connection, so each update adds only the growth.
    let seen = Mutex<[ObjectIdentifier: Traffic]>([:])

    init(factory: any MetricsFactory) {
        self.factory = factory
        routeLookups = Counter(label: "junction_route_lookups_total", dimensions: [("result", "static")], factory: factory)
        defaultRouteLookups = Counter(label: "junction_route_lookups_total", dimensions: [("result", "default")], factory: factory)
    }

    func counter(_ label: String, _ dimensions: [(String, String)]) -> Counter { Counter(label: label, dimensions: dimensions, factory: factory) }
    func gauge(_ label: String, _ dimensions: [(String, String)]) -> Gauge { Gauge(label: label, dimensions: dimensions, factory: factory) }

    func handshake(stack: String, failedBecause reason: String?) {
        counter("junction_handshakes_total", [("stack", stack), ("result", reason == nil ? "ok" : "failed"), ("reason", reason ?? "")]).increment()
    }

    func connectionEvent(_ event: String, stack: String) {
        counter("junction_connection_events_total", [("stack", stack), ("event", event)]).increment()
    }

    func reconnectAttempt(stack: String) { counter("junction_reconnect_attempts_total", [("stack", stack)]).increment() }

    func dropped(_ count: Int, reason: String) {
        guard count > 0 else { return }
        counter("junction_dropped_messages_total", [("reason", reason)]).increment(by: Int64(count))
    }

    func resolved(stack: String, seconds: Double, failed: Bool) {
        Timer(label: "junction_resolve_duration_seconds", dimensions: [("stack", stack), ("result", failed ? "failed" : "ok")], factory: factory)
            .recordNanoseconds(Int64(seconds * 1e9))
    }

    /// One connection's totals.
    struct Traffic: Sendable, Hashable {
        var framesSent = 0
        var bytesSent = 0
        var framesReceived = 0
        var bytesReceived = 0
        var compressedInput = 0
        var compressedOutput = 0
    }

    /// Adds what `connection` moved since it was last counted; `ended` forgets it.
    func count(_ connection: any PeerConnection, ended: Bool = false) {
        let now = connection.traffic
        let id = ObjectIdentifier(connection)
        let before = seen.withLock { seen in
            defer { if ended { seen[id] = nil } else { seen[id] = now } }
            return seen[id] ?? Traffic()
        }
        let dimensions = [("stack", connection.stackName), ("peer", connection.peer.description)]
        for (label, value, previous) in [
            ("junction_frames_sent_total", now.framesSent, before.framesSent), ("junction_bytes_sent_total", now.bytesSent, before.bytesSent),
            ("junction_frames_received_total", now.framesReceived, before.framesReceived),
            ("junction_bytes_received_total", now.bytesReceived, before.bytesReceived),
            ("junction_compression_input_bytes_total", now.compressedInput, before.compressedInput),
            ("junction_compression_output_bytes_total", now.compressedOutput, before.compressedOutput),
        ] where value > previous {
            counter(label, dimensions).increment(by: Int64(value - previous))
        }
    }
}
