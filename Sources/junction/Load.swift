import ArgumentParser
import Foundation
import JunctionCore
import JunctionLoad
import Logging

/// `junction load SCENARIO.yaml`: starts the scenario's nodes, drives its routes, injects
/// its faults, and reports latency and throughput per route.
struct Load: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a load scenario (Config/load/*.yaml): a progress line while it runs, a table per route at the end.",
        discussion: "Example: junction load Config/load/native-1to1.yaml --html report.html")

    @Argument(help: "The scenario file (keys in Config/load/README.md).")
    var scenario: String

    @Option(help: "Also write the report as JSON to this file.")
    var json: String?

    @Option(help: "Also write the per-route table as CSV to this file.")
    var csv: String?

    @Option(help: "Also write a self-contained HTML report with latency and throughput plots to this file.")
    var html: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .warning

    func run() async throws {
        let scenario: LoadScenario
        do { scenario = try LoadScenario.load(file: self.scenario) } catch { throw ValidationError("\(error)") }
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "junction-load")
        logger.logLevel = logLevel
        let runner = LoadRunner(scenario: scenario, binary: URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath(), logger: logger)
        let report = try await runner.run { line in
            let permanent = !line.hasPrefix("run ") && !line.hasPrefix("warm-up ")
            FileHandle.standardError.write(Data("\r\u{1B}[K\(line)\(permanent ? "\n" : "")".utf8))
        }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
        print(LoadReportWriter.table(report))
        if let json { try LoadReportWriter.json(report).write(to: URL(fileURLWithPath: json)) }
        if let csv { try LoadReportWriter.csv(report).write(toFile: csv, atomically: true, encoding: .utf8) }
        if let html { try LoadReportWriter.html(report).write(toFile: html, atomically: true, encoding: .utf8) }
    }
}
