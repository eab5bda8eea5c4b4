import JunctionCore
import JunctionTerm

/// One workload of `junction bench`, run the same way on Junction and on Erlang/OTP.
struct BenchScenario: Sendable, Hashable {
    enum Payload: String, Sendable, Hashable {
        /// `{m, I}`
        case small
        /// `{m, <<1024 bytes>>}`
        case kib
        /// `{m, Record}`, Record one of 512 different 2 KiB JSON-like binaries.
        case json
        /// `{m, Record}`, always the same 2 KiB record (the kind of payload Ergo's gzip figures use).
        case jsonSame
    }

    /// Which stack carries the Junction side: the native stack between two Junction
    /// processes, Erlang distribution from Junction to the OTP reference node, or an OTP
    /// node sending through a Junction gateway's bridges to a native Junction node.
    enum Stack: String, Sendable, Hashable {
        case native, erlang, bridge
    }

    var name: String
    var stack: Stack = .native
    var payload: Payload
    var senders: Int
    /// Junction's compression for this run; nil = off.
    var compression: CompressionSettings.Mode?
    /// Messages per run relative to `--count`.
    var countDivisor: Int

    static func all(senders: Int) -> [BenchScenario] {
        [
            BenchScenario(name: "1-to-1 small", payload: .small, senders: 1, compression: nil, countDivisor: 1),
            BenchScenario(name: "\(senders)-to-\(senders) small", payload: .small, senders: senders, compression: nil, countDivisor: 1),
            BenchScenario(name: "1-to-1 1KiB binary", payload: .kib, senders: 1, compression: nil, countDivisor: 2),
            BenchScenario(name: "1-to-1 2KiB JSON, compression off", payload: .json, senders: 1, compression: nil, countDivisor: 4),
            BenchScenario(name: "1-to-1 2KiB JSON, stream", payload: .json, senders: 1, compression: .stream, countDivisor: 10),
            BenchScenario(name: "1-to-1 2KiB JSON, message", payload: .json, senders: 1, compression: .message, countDivisor: 10),
            BenchScenario(name: "\(senders)-to-\(senders) 2KiB JSON, stream", payload: .json, senders: senders, compression: .stream, countDivisor: 10),
            BenchScenario(name: "1-to-1 same 2KiB JSON, stream", payload: .jsonSame, senders: 1, compression: .stream, countDivisor: 10),
            BenchScenario(name: "erlang: 1-to-1 small, Junction to OTP", stack: .erlang, payload: .small, senders: 1, compression: nil, countDivisor: 1),
            BenchScenario(name: "erlang: 1-to-1 1KiB binary, Junction to OTP", stack: .erlang, payload: .kib, senders: 1, compression: nil, countDivisor: 2),
            BenchScenario(name: "bridge: 1-to-1 small, OTP to gateway to Junction", stack: .bridge, payload: .small, senders: 1, compression: nil, countDivisor: 1),
            BenchScenario(name: "bridge: 1-to-1 1KiB binary, OTP to gateway to Junction", stack: .bridge, payload: .kib, senders: 1, compression: nil, countDivisor: 2),
        ]
    }

    /// Payload bytes of message `index` (what MB/s counts).
    func payloadBytes(_ records: [[UInt8]]) -> Int {
        switch payload {
        case .small: return 0
        case .kib: return 1024
        case .json, .jsonSame: return records[0].count
        }
    }

    func message(_ index: Int, records: [Term], blob: Term) -> Term {
        switch payload {
        case .small: return .tuple([.atom("m"), .int(index)])
        case .kib: return .tuple([.atom("m"), blob])
        case .json: return .tuple([.atom("m"), records[index % records.count]])
        case .jsonSame: return .tuple([.atom("m"), records[0]])
        }
    }
}

/// 512 different JSON-like records of `size` bytes: users with ids, names, flags and
/// scores, the kind of text a gateway carries between services.
func benchRecords(count: Int = 512, size: Int = 2048) -> [[UInt8]] {
    let cities = ["Lisbon", "Osaka", "Lagos", "Quito", "Tallinn", "Perth", "Montreal", "Pune"]
    return (0..<count).map { index in
        var text = "{\"batch\":\(index),\"users\":["
        var field = 0
        while text.utf8.count < size {
            let id = (index * 7919 + field * 104_729) % 1_000_003
            text += "{\"id\":\(id),\"name\":\"user\(id % 9973)\",\"city\":\"\(cities[(index + field) % cities.count])\","
            text += "\"active\":\((id % 3) == 0),\"score\":\(Double(id % 10_000) / 100),\"tags\":[\"t\(id % 17)\",\"g\(field % 5)\"]},"
            field += 1
        }
        return Array(text.utf8.prefix(size))
    }
}
