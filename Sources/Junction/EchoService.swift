import JunctionTerm

/// The `echo` process of `junction run`: answers `{From, Msg}` with `{echo, Msg}` sent
/// to `From`, and a `gen_server:call` of `Request` with `{echo, Request}`; other messages
/// are ignored.
public enum EchoService {
    public static func run(_ process: ProcessHandle) async throws {
        while !Task.isCancelled {
            let message = try await process.receive()
            guard let term = try? message.term() else { continue }
            if let call = GenCall(term) {
                try? await process.reply(to: call, with: .tuple([.atom("echo"), call.request]))
            } else if case .tuple(let elements) = term, elements.count == 2, case .pid(let from) = elements[0] {
                try? await process.send(.tuple([.atom("echo"), elements[1]]), to: .pid(from))
            }
        }
    }
}
