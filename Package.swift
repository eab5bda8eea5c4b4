// swift-tools-version:6.0
import PackageDescription

/// Hot modules skip Swift's dynamic exclusivity checks: they hold no shared mutable
/// state outside locks, and the checks cost 17-114% on the frame path (PERFORMANCE.md).
let hotPathSettings: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"])]

let package = Package(
    name: "Junction",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Junction", targets: ["Junction"]),
        .library(name: "JunctionTerm", targets: ["JunctionTerm"]),
        .library(name: "JunctionTransport", targets: ["JunctionTransport"]),
        .executable(name: "junction", targets: ["junction"]),
        .executable(name: "junction-config-check", targets: ["junction-config-check"]),
        .plugin(name: "JunctionConfigCheck", targets: ["JunctionConfigCheck"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .target(
            name: "JunctionTerm",
            dependencies: ["CZlib", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: hotPathSettings
        ),
        .target(
            name: "JunctionCore",
            dependencies: [
                "JunctionTerm",
                "Yams",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "JunctionTransport",
            dependencies: [
                "JunctionCore",
                "CZlib",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: hotPathSettings
        ),
        .target(
            name: "JunctionNative",
            dependencies: [
                "JunctionTransport",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: hotPathSettings
        ),
        .target(
            name: "JunctionErlang",
            dependencies: [
                "JunctionTransport",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: hotPathSettings
        ),
        .target(
            name: "Junction",
            dependencies: [
                "JunctionNative",
                "JunctionErlang",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: hotPathSettings
        ),
        .target(
            name: "JunctionAdmin",
            dependencies: [
                "Junction",
                "JunctionTransport",
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(
            name: "JunctionLoad",
            dependencies: [
                "Junction",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .executableTarget(
            name: "junction",
            dependencies: [
                "Junction",
                "JunctionLoad",
                "JunctionAdmin",
                "JunctionTransport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            resources: [.embedInCode("junction.yaml")]
        ),
        // The tool `swift package junction-config-check` runs: it links only the light
        // modules, so the plugin does not build the whole graph a second time.
        .executableTarget(name: "junction-config-check", dependencies: ["JunctionCore", "Yams"]),
        .plugin(
            name: "JunctionConfigCheck",
            capability: .command(
                intent: .custom(verb: "junction-config-check", description: "Validate Junction config files and explain the routes for node names")),
            dependencies: ["junction-config-check"]
        ),
        .testTarget(name: "JunctionTermTests", dependencies: ["JunctionTerm"]),
        .testTarget(name: "JunctionCoreTests", dependencies: ["JunctionCore"]),
        .testTarget(
            name: "JunctionTransportTests",
            dependencies: ["JunctionTransport", .product(name: "NIOEmbedded", package: "swift-nio")]
        ),
        .testTarget(
            name: "JunctionNativeTests",
            dependencies: ["JunctionNative", .product(name: "NIOEmbedded", package: "swift-nio")]
        ),
        .testTarget(
            name: "JunctionErlangTests",
            dependencies: ["JunctionErlang", .product(name: "NIOEmbedded", package: "swift-nio")]
        ),
        .testTarget(
            name: "JunctionTests",
            dependencies: [
                "Junction", "JunctionLoad", "JunctionAdmin", .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "MetricsTestKit", package: "swift-metrics"), .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            exclude: ["Fixtures"]
        ),
        .testTarget(name: "JunctionLoadTests", dependencies: ["JunctionLoad"]),
    ],
    swiftLanguageModes: [.v6]
)
