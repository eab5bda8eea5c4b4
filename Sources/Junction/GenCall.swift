import JunctionTerm

/// A `gen_server:call` request as it arrives in a mailbox:
/// `{'$gen_call', {From, Tag}, Request}`. Answer it with `ProcessHandle.reply(to:with:)`.
public struct GenCall: Sendable, Hashable {
    public let from: Pid
    /// A reference, or `[alias | Ref]` when the caller made an alias for the reply.
    public let tag: Term
    public let request: Term

    public init?(_ term: Term) {
        guard case .tuple(let fields) = term, fields.count == 3, fields[0] == .atom("$gen_call"),
            case .tuple(let client) = fields[1], client.count == 2, case .pid(let from) = client[0]
        else { return nil }
        self.from = from
        self.tag = client[1]
        self.request = fields[2]
    }

    /// Where the reply goes: the caller's alias when the tag carries one (OTP 24 and
    /// later), otherwise the caller's pid, as `gen:reply/2` does.
    public var replyDestination: Destination {
        if case .improperList(let head, .ref(let alias)) = tag, head == [.atom("alias")] { return .alias(alias) }
        return .pid(from)
    }
}

extension ProcessHandle {
    /// Sends `{Tag, Reply}` back to the caller of `call`.
    public func reply(to call: GenCall, with reply: Term) async throws {
        try await send(.tuple([call.tag, reply]), to: call.replyDestination)
    }
}
