import Foundation
import Synchronization

/// A child process that ended before doing what was expected of it.
public struct ChildProcessFailure: Error, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// A child process whose output is collected as it arrives.
public final class ChildProcess: Sendable {
    public let process: Process
    let stderrText = Mutex("")
    let stdoutText = Mutex("")
    let lines: AsyncStream<String>
    let lineSink: AsyncStream<String>.Continuation
    let exited: AsyncStream<Int32>
    let exitSink: AsyncStream<Int32>.Continuation

    public init(binary: URL, arguments: [String], environment: [String: String]) throws {
        process = Process()
        process.executableURL = binary
        process.arguments = arguments
        process.environment = environment
        (lines, lineSink) = AsyncStream.makeStream(of: String.self)
        (exited, exitSink) = AsyncStream.makeStream(of: Int32.self, bufferingPolicy: .bufferingNewest(1))
        let errorPipe = Pipe()
        let outputPipe = Pipe()
        process.standardError = errorPipe
        process.standardOutput = outputPipe
        // Each pipe is read to its end by a thread of its own (blocking reads: no dispatch
        // sources, which crash on Linux when many children exit at once); the exit is
        // reported once both pipes are drained and the process has terminated.
        let errors = errorPipe.fileHandleForReading
        let output = outputPipe.fileHandleForReading
        Thread.detachNewThread { self.drain(errors, isError: true) }
        Thread.detachNewThread { self.drain(output, isError: false) }
        process.terminationHandler = { process in
            let status = process.terminationStatus
            self.finish { $0.status = status }
        }
        try process.run()
    }

    /// Open pipes and the exit status, until both pipes are drained and it exited.
    let ending = Mutex((openPipes: 2, status: Int32?.none))

    /// Reads `handle` to its end with plain `read(2)`, retrying when a signal interrupts
    /// it (Foundation's `availableData` traps on EINTR).
    func drain(_ handle: FileHandle, isError: Bool) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(handle.fileDescriptor, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            let chunk = String(decoding: buffer[..<count], as: UTF8.self)
            if isError { stderrText.withLock { $0 += chunk } } else { stdoutText.withLock { $0 += chunk } }
            lineSink.yield(chunk)
        }
        finish { $0.openPipes -= 1 }
    }

    func finish(_ update: (inout (openPipes: Int, status: Int32?)) -> Void) {
        let status = ending.withLock { state -> Int32? in
            update(&state)
            return state.openPipes == 0 ? state.status : nil
        }
        guard let status else { return }
        lineSink.finish()
        exitSink.yield(status)
        exitSink.finish()
    }

    public var output: String { stderrText.withLock { $0 } }
    public var standardOutput: String { stdoutText.withLock { $0 } }

    /// Waits until the process has printed (on either stream) a line containing `text`
    /// (fails if it exits first).
    public func waitForLine(containing text: String) async throws {
        if output.contains(text) || standardOutput.contains(text) { return }
        for await _ in lines where output.contains(text) || standardOutput.contains(text) { return }
        throw ChildProcessFailure(message: "the process exited before printing '\(text)'; it printed:\n\(standardOutput)\n\(output)")
    }

    public func exitStatus() async -> Int32 {
        for await status in exited { return status }
        return process.terminationStatus
    }

    /// Signals the process by its pid: SIGTERM (a graceful shutdown) unless told
    /// otherwise (`erl -noshell` does not act on SIGTERM). Does not wait: the exit is
    /// reported through `exitStatus()` (Foundation's `waitUntilExit` is not safe with
    /// many processes exiting at once).
    public func signal(_ signal: Int32 = SIGTERM) {
        if process.isRunning { kill(process.processIdentifier, signal) }
    }

    /// Signals the process and waits until it has exited.
    public func stop(signal: Int32 = SIGTERM) async {
        self.signal(signal)
        _ = await exitStatus()
    }
}


extension ChildProcess {
    /// The child's pid.
    public var pid: Int32 { process.processIdentifier }
}
