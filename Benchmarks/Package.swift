// swift-tools-version:6.1
import PackageDescription

// Microbenchmarks of Junction's hot paths, in their own package so the main build and
// CI never compile the benchmark framework. Run from this folder:
//   swift package benchmark
let package = Package(
    name: "JunctionBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Junction", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "Codecs",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "JunctionTerm", package: "Junction"),
                .product(name: "JunctionTransport", package: "Junction"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Benchmarks/Codecs",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ]
)
