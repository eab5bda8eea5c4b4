import JunctionTerm

/// The `echo` process of `junction run`: answers `{From, Msg}` with `{echo, Msg}` sent
/// to `From`; other messages are ignored.
public enum EchoService {
    public static func run(_ process: ProcessHandle) async throws {
        while !Task.isCancelled {
            let message = try await process.receive()
            guard case .tuple(let elements) = try? message.term(), elements.count == 2, case .pid(let from) = elements[0] else { continue }
            try? await process.send(.tuple([.atom("echo"), elements[1]]), to: .pid(from))
        }
    }
}
