import Foundation
import Histogram
import Synchronization

/// What `junction load` measured: per route, its latency distribution and throughput
/// over time; the events of the run (faults, connection changes); what each process used.
public struct LoadReport: Sendable, Codable, Hashable {
    public struct Route: Sendable, Codable, Hashable {
        public var name: String
        public var target: String
        /// `open N/s` or `closed`.
        public var mode: String
        public var sent: Int
        public var received: Int
        /// Sent in the measured window and never answered (within the drain time); sends
        /// that failed are `errors`, not lost.
        public var lost: Int
        /// Sends that failed (the node refused them: blocked, retention full, no route).
        public var errors: Int
        public var messagesPerSecond: Double
        public var megabytesPerSecond: Double
        /// Latency percentiles, microseconds.
        public var p50: Double
        public var p90: Double
        public var p99: Double
        public var p999: Double
        public var max: Double
        /// The latency curve for the plot: (percentile, microseconds).
        public var percentiles: [Point]
        /// Answers per second of the measured window.
        public var throughput: [Int]
    }

    public struct Point: Sendable, Codable, Hashable {
        public var percentile: Double
        public var micros: Double
    }

    public struct Event: Sendable, Codable, Hashable {
        /// Seconds since the start of the measured window (negative: during warm-up).
        public var at: Double
        public var text: String
    }

    public struct ProcessUsage: Sendable, Codable, Hashable {
        public var name: String
        public var cpuSeconds: Double
        public var maxResidentMegabytes: Double
    }

    public var scenario: String
    public var machine: String
    public var durationSeconds: Double
    public var warmupSeconds: Double
    public var routes: [Route]
    public var events: [Event]
    public var processes: [ProcessUsage]
}

/// Collects one route's samples while it runs; thread-safe.
public final class RouteRecorder: Sendable {
    struct State {
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        var perSecond: [Int] = []
        var sent = 0
        var received = 0
        var errors = 0
        var errorKinds: Set<String> = []
        var payloadBytes = 0
    }

    let state = Mutex(State())

    public init() {}

    public func sent() { state.withLock { $0.sent += 1 } }

    /// A send failed; true for the first failure with this description (worth reporting).
    @discardableResult
    public func failed(_ description: String = "") -> Bool {
        state.withLock { state in
            state.errors += 1
            return state.errorKinds.insert(description).inserted
        }
    }

    /// An answer in the measured window, `second` seconds into it, after `latency` ns.
    public func answered(latency nanoseconds: UInt64, second: Int, payloadBytes: Int) {
        state.withLock { state in
            _ = state.histogram.record(Swift.max(nanoseconds / 1000, 1))
            state.received += 1
            state.payloadBytes += payloadBytes
            if second >= 0 {
                if state.perSecond.count <= second { state.perSecond += Array(repeating: 0, count: second + 1 - state.perSecond.count) }
                state.perSecond[second] += 1
            }
        }
    }

    /// So far: answers, p50 and p99 in microseconds, errors (for the progress line).
    public var progress: (received: Int, p50: UInt64, p99: UInt64, errors: Int) {
        state.withLock { ($0.received, $0.histogram.valueAtPercentile(50), $0.histogram.valueAtPercentile(99), $0.errors) }
    }

    public func report(name: String, target: String, mode: String, seconds: Double) -> LoadReport.Route {
        state.withLock { state in
            let histogram = state.histogram
            let points = [0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100].map {
                LoadReport.Point(percentile: $0, micros: Double(histogram.valueAtPercentile($0)))
            }
            let seconds = Swift.max(seconds, 1e-9)
            return LoadReport.Route(
                name: name, target: target, mode: mode, sent: state.sent, received: state.received, lost: Swift.max(state.sent - state.received - state.errors, 0),
                errors: state.errors, messagesPerSecond: Double(state.received) / seconds, megabytesPerSecond: Double(state.payloadBytes) / seconds / 1e6,
                p50: Double(histogram.valueAtPercentile(50)), p90: Double(histogram.valueAtPercentile(90)), p99: Double(histogram.valueAtPercentile(99)),
                p999: Double(histogram.valueAtPercentile(99.9)), max: Double(histogram.max), percentiles: points,
                throughput: Array(state.perSecond.prefix(Int(seconds.rounded(.up)))))
        }
    }
}

/// The report as people read it (a table), as machines read it (JSON, CSV), and as a
/// self-contained HTML page with its plots drawn in SVG.
public enum LoadReportWriter {
    public static func table(_ report: LoadReport) -> String {
        var lines = ["## junction load \(report.scenario) (\(report.machine); \(format(report.durationSeconds)) s measured after \(format(report.warmupSeconds)) s warm-up)", ""]
        lines.append("| route | target | mode | msgs/s | MB/s | p50 us | p90 us | p99 us | p99.9 us | max us | sent | lost | errors |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for route in report.routes {
            lines.append(
                "| \(route.name) | \(route.target) | \(route.mode) | \(Int(route.messagesPerSecond)) | \(format(route.megabytesPerSecond)) | \(format(route.p50)) | \(format(route.p90)) | \(format(route.p99)) | \(format(route.p999)) | \(format(route.max)) | \(route.sent) | \(route.lost) | \(route.errors) |"
            )
        }
        if !report.events.isEmpty {
            lines += ["", "| at s | event |", "| --- | --- |"]
            for event in report.events { lines.append("| \(format(event.at)) | \(event.text.split(whereSeparator: \.isNewline).joined(separator: " ")) |") }
        }
        if !report.processes.isEmpty {
            lines += ["", "| process | CPU s | max RSS MB |", "| --- | --- | --- |"]
            for process in report.processes { lines.append("| \(process.name) | \(format(process.cpuSeconds)) | \(format(process.maxResidentMegabytes)) |") }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    public static func json(_ report: LoadReport) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(report)
    }

    public static func csv(_ report: LoadReport) -> String {
        var lines = ["route,target,mode,msgs_per_s,mb_per_s,p50_us,p90_us,p99_us,p999_us,max_us,sent,received,lost,errors"]
        for route in report.routes {
            let fields: [String] = [
                route.name, route.target, route.mode, format(route.messagesPerSecond), format(route.megabytesPerSecond), format(route.p50), format(route.p90),
                format(route.p99), format(route.p999), format(route.max), String(route.sent), String(route.received), String(route.lost), String(route.errors),
            ]
            lines.append(fields.map(csvField).joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func csvField(_ text: String) -> String {
        text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
    }

    /// One file, no network: the data as JSON in the page, the plots as inline SVG.
    public static func html(_ report: LoadReport) throws -> String {
        let data = String(decoding: try json(report), as: UTF8.self).replacingOccurrences(of: "</", with: "<\\/")
        let table = escape(self.table(report))
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>junction load \(escape(report.scenario))</title>
            <style>body{font-family:sans-serif;margin:24px;color:#222} svg{background:#fff;border:1px solid #ccc;margin:8px 0} pre{background:#f6f6f6;padding:12px;overflow:auto}
            .legend span{display:inline-block;margin-right:16px} .swatch{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}</style></head>
            <body>
            <h1>junction load: \(escape(report.scenario))</h1>
            <p>\(escape(report.machine)); \(format(report.durationSeconds)) s measured after \(format(report.warmupSeconds)) s of warm-up.</p>
            <div class="legend">\(legend(report))</div>
            <h2>Latency by percentile</h2>
            \(latencyPlot(report))
            <h2>Throughput over time</h2>
            \(throughputPlot(report))
            <h2>Table</h2>
            <pre>\(table)</pre>
            <script type="application/json" id="report-data">\(data)</script>
            </body></html>

            """
    }

    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

    static func legend(_ report: LoadReport) -> String {
        report.routes.enumerated().map { index, route in
            "<span><i class=\"swatch\" style=\"background:\(colors[index % colors.count])\"></i>\(escape(route.name))</span>"
        }.joined()
    }

    /// Latency (log scale) against percentile, spread as 1/(1-p) like HdrHistogram plots.
    static func latencyPlot(_ report: LoadReport) -> String {
        let (width, height, left, bottom) = (760.0, 360.0, 70.0, 40.0)
        let maxLatency = Swift.max(report.routes.flatMap(\.percentiles).map(\.micros).max() ?? 1, 1)
        let topExponent = Swift.max(1, Int(log10(maxLatency).rounded(.up)))
        func x(_ percentile: Double) -> Double {
            let spread = log10(1 / Swift.max(1 - Swift.min(percentile, 99.99) / 100, 1e-4))
            return left + spread / 4 * (width - left - 20)
        }
        func y(_ micros: Double) -> Double { height - bottom - log10(Swift.max(micros, 1)) / Double(topExponent) * (height - bottom - 20) }
        var svg = "<svg id=\"latency-plot\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\">"
        for exponent in 0...topExponent {
            let value = pow(10, Double(exponent))
            svg += "<line x1=\"\(left)\" x2=\"\(width - 20)\" y1=\"\(y(value))\" y2=\"\(y(value))\" stroke=\"#eee\"/>"
            svg += "<text x=\"\(left - 6)\" y=\"\(y(value) + 4)\" font-size=\"11\" text-anchor=\"end\">\(label(micros: value))</text>"
        }
        for percentile in [0.0, 90, 99, 99.9, 99.99] {
            svg += "<line x1=\"\(x(percentile))\" x2=\"\(x(percentile))\" y1=\"20\" y2=\"\(height - bottom)\" stroke=\"#eee\"/>"
            svg += "<text x=\"\(x(percentile))\" y=\"\(height - bottom + 16)\" font-size=\"11\" text-anchor=\"middle\">p\(format(percentile))</text>"
        }
        for (index, route) in report.routes.enumerated() {
            let points = route.percentiles.map { "\(format(x($0.percentile))),\(format(y($0.micros)))" }.joined(separator: " ")
            svg += "<polyline class=\"route\" data-route=\"\(escape(route.name))\" fill=\"none\" stroke-width=\"2\" stroke=\"\(colors[index % colors.count])\" points=\"\(points)\"/>"
        }
        svg += "<text x=\"14\" y=\"\(height / 2)\" font-size=\"12\" transform=\"rotate(-90 14 \(height / 2))\" text-anchor=\"middle\">latency</text></svg>"
        return svg
    }

    /// Answers per second over the measured window, one line per route.
    static func throughputPlot(_ report: LoadReport) -> String {
        let (width, height, left, bottom) = (760.0, 300.0, 70.0, 40.0)
        let seconds = Swift.max(report.routes.map(\.throughput.count).max() ?? 1, 1)
        let peak = Double(Swift.max(report.routes.flatMap(\.throughput).max() ?? 1, 1))
        func x(_ second: Int) -> Double { left + Double(second) / Double(Swift.max(seconds - 1, 1)) * (width - left - 20) }
        func y(_ count: Int) -> Double { height - bottom - Double(count) / peak * (height - bottom - 20) }
        var svg = "<svg id=\"throughput-plot\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\">"
        for step in 0...4 {
            let value = Int(peak * Double(step) / 4)
            svg += "<line x1=\"\(left)\" x2=\"\(width - 20)\" y1=\"\(y(value))\" y2=\"\(y(value))\" stroke=\"#eee\"/>"
            svg += "<text x=\"\(left - 6)\" y=\"\(y(value) + 4)\" font-size=\"11\" text-anchor=\"end\">\(value)</text>"
        }
        for second in stride(from: 0, to: seconds, by: Swift.max(1, seconds / 10)) {
            svg += "<text x=\"\(x(second))\" y=\"\(height - bottom + 16)\" font-size=\"11\" text-anchor=\"middle\">\(second)s</text>"
        }
        for event in report.events where event.at >= 0 {
            let position = left + event.at / Double(Swift.max(seconds - 1, 1)) * (width - left - 20)
            svg += "<line class=\"event\" x1=\"\(format(position))\" x2=\"\(format(position))\" y1=\"20\" y2=\"\(height - bottom)\" stroke=\"#999\" stroke-dasharray=\"4 3\"><title>\(escape(event.text))</title></line>"
        }
        for (index, route) in report.routes.enumerated() {
            let points = route.throughput.enumerated().map { "\(format(x($0.offset))),\(format(y($0.element)))" }.joined(separator: " ")
            svg += "<polyline class=\"route\" data-route=\"\(escape(route.name))\" fill=\"none\" stroke-width=\"2\" stroke=\"\(colors[index % colors.count])\" points=\"\(points)\"/>"
        }
        svg += "<text x=\"14\" y=\"\(height / 2)\" font-size=\"12\" transform=\"rotate(-90 14 \(height / 2))\" text-anchor=\"middle\">msgs/s</text></svg>"
        return svg
    }

    static func label(micros: Double) -> String {
        micros >= 1_000_000 ? "\(format(micros / 1_000_000)) s" : micros >= 1000 ? "\(format(micros / 1000)) ms" : "\(format(micros)) us"
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func format(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int(value)) }
        return abs(value) >= 100 ? String(Int(value.rounded())) : String(format: "%.2f", value)
    }
}
