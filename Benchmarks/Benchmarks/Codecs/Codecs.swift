import Benchmark
import JunctionCore
import JunctionTerm
import JunctionTransport
import NIOCore

/// 512 different JSON-like records of about 2 KiB, as `junction bench` sends.
func records() -> [[UInt8]] {
    (0..<512).map { index in
        var text = "{\"batch\":\(index),\"users\":["
        var field = 0
        while text.utf8.count < 2048 {
            let id = (index * 7919 + field * 104_729) % 1_000_003
            text += "{\"id\":\(id),\"name\":\"user\(id % 9973)\",\"active\":\((id % 3) == 0),\"score\":\(Double(id % 10_000) / 100)},"
            field += 1
        }
        return Array(text.utf8.prefix(2048))
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .throughput, .mallocCountTotal], maxDuration: .seconds(2), maxIterations: 1_000_000)

    let small = Term.tuple([.atom("m"), .int(123_456)])
    let kib = Term.tuple([.atom("m"), .binary([UInt8](repeating: 0x5A, count: 1024))])
    let record = Term.map([
        MapEntry(.atom("id"), .int(42)), MapEntry(.atom("name"), .binary(Array("user42".utf8))),
        MapEntry(.atom("tags"), .list([.atom("a"), .atom("b"), .atom("c")])), MapEntry(.atom("score"), .float(3.25)),
    ])

    for (name, term) in [("{m, I}", small), ("{m, <<1 KiB>>}", kib), ("4-key map", record)] {
        Benchmark("ETF encode \(name)") { benchmark in
            var buffer = ByteBuffer()
            buffer.reserveCapacity(2048)
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                buffer.clear()
                try ETF.encode(term, into: &buffer)
                blackHole(buffer)
            }
        }
        let encoded = ByteBuffer(bytes: try! ETF.encode(term))
        Benchmark("ETF decode \(name)") { benchmark in
            for _ in benchmark.scaledIterations { blackHole(try ETF.decode(encoded)) }
        }
    }

    // 64 small message frames per batch, as the outbox writes them under load.
    let batch: ByteBuffer = {
        var buffer = ByteBuffer()
        for index in 0..<64 {
            Frame.write(kind: 16, streamKey: UInt32(index), into: &buffer) { buffer in
                buffer.writeBytes([4] + Array("sink".utf8))
                try! ETF.encode(.tuple([.atom("m"), .int(index)]), into: &buffer)
            }
        }
        return buffer
    }()
    Benchmark("Frame write, 64 small frames per batch") { benchmark in
        let address: [UInt8] = [4] + Array("sink".utf8)
        let terms = (0..<64).map { Term.tuple([.atom("m"), .int($0)]) }
        var buffer = ByteBuffer()
        buffer.reserveCapacity(8192)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            buffer.clear()
            for index in 0..<64 {
                Frame.write(kind: 16, streamKey: UInt32(index), into: &buffer) { buffer in
                    buffer.writeBytes(address)
                    try! ETF.encode(terms[index], into: &buffer)
                }
            }
            blackHole(buffer)
        }
    }
    Benchmark("Frame parse, 64 small frames per read") { benchmark in
        var parser = FrameParser(maxFrameSize: 1 << 20)
        for _ in benchmark.scaledIterations {
            var count = 0
            try parser.consume(batch) { _ in count += 1 }
            blackHole(count)
        }
    }

    let json = records()
    Benchmark("Deflate 2 KiB JSON, stream mode, level 1", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let deflater = Deflater(settings: CompressionSettings(level: 1, threshold: 0, mode: .stream))
        blackHole(json[0].withUnsafeBytes { deflater.compress($0) { compressed, _ in compressed.count } })
        benchmark.startMeasurement()
        for iteration in benchmark.scaledIterations {
            blackHole(json[iteration % json.count].withUnsafeBytes { deflater.compress($0) { compressed, _ in compressed.count } })
        }
    }
    Benchmark("Deflate 2 KiB JSON, stream mode, level 1, batches of 4", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let deflater = Deflater(settings: CompressionSettings(level: 1, threshold: 0, mode: .stream))
        benchmark.startMeasurement()
        for iteration in benchmark.scaledIterations {
            json[iteration % json.count].withUnsafeBytes { deflater.addToBatch($0) }
            if iteration % 4 == 3 { blackHole(deflater.finishBatch { compressed, _ in compressed.count }) }
        }
    }
    let compressed: [ByteBuffer] = {
        let deflater = Deflater(settings: CompressionSettings(level: 1, threshold: 0, mode: .message))
        return json.map { record in
            record.withUnsafeBytes { deflater.compress($0) { compressed, _ in ByteBuffer(bytes: compressed) } }
        }
    }()
    Benchmark("Inflate 2 KiB JSON, message mode", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let inflater = Inflater(limit: 1 << 20)
        blackHole(try inflater.inflate(compressed[0], flags: FrameFlags.compressed | FrameFlags.independent, allocator: .init()))
        benchmark.startMeasurement()
        for iteration in benchmark.scaledIterations {
            blackHole(try inflater.inflate(compressed[iteration % compressed.count], flags: FrameFlags.compressed | FrameFlags.independent, allocator: .init()))
        }
    }
}
