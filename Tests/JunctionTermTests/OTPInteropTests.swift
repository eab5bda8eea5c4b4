import Foundation
import Testing

@testable import JunctionTerm

/// Checks the codec against a real OTP node's `term_to_binary/2` (Debian's erlang-nox,
/// which the project's test command installs).
@Suite("ETF against real OTP")
struct OTPInteropTests {
    static let sources = [
        #"{hello,42,<<"bin">>,#{k => [1,2]}}"#, "[1000,2000]", #""abc""#, "123456789012345678901234567890",
        "-123456789012345678901234567890", "-3.25", "'Quoted atom'", "[a|b]", "{}", "[]", "<<>>", "2147483648",
        "-2147483649", "255", "256", "-1", #"#{a => 1}"#, "'ünïcødé'", "[{x,[y|z]},<<0,255>>]",
    ]

    @Test("OTP's term_to_binary output decodes to the parsed term, and we encode the same bytes")
    func matchesTermToBinary() async throws {
        let script = """
            Ts = [\(Self.sources.joined(separator: ", "))],
            lists:foreach(fun(T) -> io:format("~w~n", [binary_to_list(term_to_binary(T, [{minor_version, 2}]))]) end, Ts),
            halt().
            """
        let output = try await runErl(script)
        let lines = output.split(separator: "\n").map(String.init)
        try #require(lines.count == Self.sources.count, "erl printed: \(output)")
        for (source, line) in zip(Self.sources, lines) {
            let otpBytes = line.dropFirst().dropLast().split(separator: ",").map { UInt8($0)! }
            let expected = try TermParser.parse(source)
            #expect(try ETF.decode(otpBytes) == expected, "\(source)")
            #expect(try ETF.encode(expected) == otpBytes, "\(source)")
        }
    }
}

/// Runs `erl -noshell -eval SCRIPT` and returns what it printed. Fails when erl is not
/// installed: the test command installs it, and an interop test never skips.
/// It runs on a thread of its own: Foundation's `Process` completes its waits on the same
/// few threads as Swift's concurrency, so a blocking wait there can starve them all.
func runErl(_ script: String) async throws -> String {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try runErlBlocking(script) }) }
    }
}

func runErlBlocking(_ script: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["erl", "-noshell", "-eval", script]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    guard process.terminationStatus == 0 else {
        throw InteropFailure(message: "erl exited with \(process.terminationStatus) (is erlang-nox installed?): \(text)")
    }
    return text
}

struct InteropFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
