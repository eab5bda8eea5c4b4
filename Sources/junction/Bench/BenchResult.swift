import Foundation

/// Throughput of one scenario on one side (Junction or Erlang), over the timed runs.
struct ThroughputResult: Codable, Sendable {
    var messagesPerRun: Int
    /// Messages per second of each timed run.
    var rates: [Double]
    /// CPU seconds per message of each timed run, both processes together.
    var cpuPerMessage: [Double]
    /// Bytes on the wire per message (sender to receiver), median run.
    var wireBytesPerMessage: Double?
    var payloadBytesPerMessage: Int

    var medianRate: Double { median(rates) }
    var megabytesPerSecond: Double { medianRate * Double(payloadBytesPerMessage) / 1_000_000 }
    var medianCPUMicroseconds: Double { median(cpuPerMessage) * 1_000_000 }
}

/// Round-trip latency of `echo` calls, in microseconds.
struct LatencyResult: Codable, Sendable {
    var calls: Int
    var p50: Double
    var p90: Double
    var p99: Double
    var max: Double

    init(calls: Int, p50: Double, p90: Double, p99: Double, max: Double) {
        self.calls = calls
        self.p50 = p50
        self.p90 = p90
        self.p99 = p99
        self.max = max
    }

    /// From unsorted samples in nanoseconds.
    init(nanoseconds samples: [UInt64]) {
        let sorted = samples.sorted()
        func percentile(_ q: Double) -> Double {
            Double(sorted[Swift.max(0, Swift.min(sorted.count - 1, Int((q * Double(sorted.count)).rounded(.up)) - 1))]) / 1000
        }
        self.init(calls: sorted.count, p50: percentile(0.5), p90: percentile(0.9), p99: percentile(0.99), max: Double(sorted.last ?? 0) / 1000)
    }
}

/// One row of the report.
struct ScenarioReport: Codable, Sendable {
    var scenario: String
    var compression: String
    var junction: ThroughputResult
    var erlang: ThroughputResult?
    /// Junction's median rate over Erlang's, measured in the same run.
    var ratio: Double? { erlang.map { junction.medianRate / $0.medianRate } }

    enum CodingKeys: String, CodingKey { case scenario, compression, junction, erlang, ratio }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(scenario, forKey: .scenario)
        try container.encode(compression, forKey: .compression)
        try container.encode(junction, forKey: .junction)
        try container.encodeIfPresent(erlang, forKey: .erlang)
        try container.encodeIfPresent(ratio, forKey: .ratio)
    }

    init(scenario: String, compression: String, junction: ThroughputResult, erlang: ThroughputResult?) {
        self.scenario = scenario
        self.compression = compression
        self.junction = junction
        self.erlang = erlang
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        scenario = try container.decode(String.self, forKey: .scenario)
        compression = try container.decode(String.self, forKey: .compression)
        junction = try container.decode(ThroughputResult.self, forKey: .junction)
        erlang = try container.decodeIfPresent(ThroughputResult.self, forKey: .erlang)
    }
}

/// Everything one `junction bench` run measured.
struct BenchReport: Codable, Sendable {
    var machine: String
    var runs: Int
    var scenarios: [ScenarioReport]
    /// Plain zlib (level 1, one stream, a sync flush per record) on one core, in records/s:
    /// the limit for compressing the JSON scenarios' messages one at a time.
    var zlibBaselineRate: Double
    /// Plain zlib (level 1, one stream, no flush) on one core, in records/s: the limit
    /// for `stream` mode's batches.
    var zlibUnflushedRate: Double
    /// Junction's `stream`-mode deflater alone on one core (its level-1 tuning, the copy
    /// out), in records/s: what the compressed scenarios spend beyond it is the pipeline.
    var deflaterRate: Double
    /// Plain zlib inflating the flushed stream on one core, in records/s.
    var zlibInflateRate: Double
    /// Junction's `stream`-mode inflater alone on one core, in records/s: the receiving
    /// side's share of compression, which shares the two cores with the senders' deflate.
    var inflaterRate: Double
    var junctionLatency: LatencyResult
    var erlangLatency: LatencyResult?

    /// How much faster N pairs can compress than one, on this machine's cores, if they
    /// did nothing but deflate and inflate: one pair runs at most at the deflater's rate
    /// (its deflate stream is serial), N pairs share the cores between deflate and
    /// inflate. Batches make deflate and inflate cheaper in about the same proportion
    /// (`Benchmarks/probes/deflate-tune.c`), so it holds for them too. Work beyond zlib on
    /// the receiving side lowers it further.
    var nToNCeiling: Double {
        Double(ProcessInfo.processInfo.activeProcessorCount) / (1 + deflaterRate / inflaterRate)
    }
}

func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}
