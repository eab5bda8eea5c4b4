import NIOCore

/// The messages of the Erlang port mapper (epmd), as `spec/erlang-distribution.md` §1.1
/// lists them. Every request is `Len:16 | Request`; replies have no length prefix.
public enum EpmdProtocol {
    public static let defaultPort = 4369

    static let alive2Request: UInt8 = 120
    static let alive2Response: UInt8 = 121
    static let alive2ExtendedResponse: UInt8 = 118
    static let portPleaseRequest: UInt8 = 122
    static let portResponse: UInt8 = 119
    static let namesRequest: UInt8 = 110

    /// What a node registers and what PORT_PLEASE2 answers.
    public struct Entry: Sendable, Hashable {
        /// The part of the node name before `@`.
        public var alive: String
        public var port: UInt16
        /// 77 ('M') for a normal node, 72 ('H') for a hidden one.
        public var nodeType: UInt8
        /// 0: TCP over IPv4.
        public var transport: UInt8
        public var highestVersion: UInt16
        public var lowestVersion: UInt16
        public var extra: [UInt8]

        public static let normalNode: UInt8 = 77
        public static let hiddenNode: UInt8 = 72

        public init(alive: String, port: UInt16, hidden: Bool = false, highestVersion: UInt16 = 6, lowestVersion: UInt16 = 5, extra: [UInt8] = []) {
            self.alive = alive
            self.port = port
            self.nodeType = hidden ? Self.hiddenNode : Self.normalNode
            self.transport = 0
            self.highestVersion = highestVersion
            self.lowestVersion = lowestVersion
            self.extra = extra
        }
    }

    /// Why epmd traffic was refused or could not be read.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    // MARK: - requests

    /// ALIVE2_REQ for `entry`, length prefix included.
    public static func encodeAlive2(_ entry: Entry) -> ByteBuffer {
        var body = ByteBuffer()
        body.writeInteger(alive2Request)
        writeEntryFields(entry, into: &body)
        return lengthPrefixed(body)
    }

    /// PORT_PLEASE2_REQ for `alive`, length prefix included.
    public static func encodePortPlease(_ alive: String) -> ByteBuffer {
        var body = ByteBuffer()
        body.writeInteger(portPleaseRequest)
        body.writeString(alive)
        return lengthPrefixed(body)
    }

    /// NAMES_REQ, length prefix included.
    public static func encodeNames() -> ByteBuffer {
        var body = ByteBuffer()
        body.writeInteger(namesRequest)
        return lengthPrefixed(body)
    }

    /// `PortNo NodeType Protocol Highest Lowest Nlen Name Elen Extra`.
    static func writeEntryFields(_ entry: Entry, into buffer: inout ByteBuffer) {
        buffer.writeMultipleIntegers(entry.port, entry.nodeType, entry.transport, entry.highestVersion, entry.lowestVersion)
        buffer.writeInteger(UInt16(entry.alive.utf8.count))
        buffer.writeString(entry.alive)
        buffer.writeInteger(UInt16(entry.extra.count))
        buffer.writeBytes(entry.extra)
    }

    static func readEntryFields(_ buffer: inout ByteBuffer) -> Entry? {
        guard let (port, nodeType, transport, highest, lowest) = buffer.readMultipleIntegers(as: (UInt16, UInt8, UInt8, UInt16, UInt16).self),
            let nameLength = buffer.readInteger(as: UInt16.self), let alive = buffer.readString(length: Int(nameLength)),
            let extraLength = buffer.readInteger(as: UInt16.self), let extra = buffer.readBytes(length: Int(extraLength))
        else { return nil }
        var entry = Entry(alive: alive, port: port, highestVersion: highest, lowestVersion: lowest, extra: extra)
        entry.nodeType = nodeType
        entry.transport = transport
        return entry
    }

    // MARK: - replies

    /// The answer to ALIVE2_REQ: the creation to use, or nil while incomplete.
    public static func decodeAlive2Reply(_ buffer: ByteBuffer) throws(Failure) -> UInt32? {
        var buffer = buffer
        guard let tag = buffer.readInteger(as: UInt8.self), let result = buffer.readInteger(as: UInt8.self) else { return nil }
        let creation: UInt32
        switch tag {
        case alive2ExtendedResponse:
            guard let value = buffer.readInteger(as: UInt32.self) else { return nil }
            creation = value
        case alive2Response:
            guard let value = buffer.readInteger(as: UInt16.self) else { return nil }
            creation = UInt32(value)
        default:
            throw Failure("epmd answered the registration with an unknown message (tag \(tag)); is something else listening on the epmd port?")
        }
        guard result == 0 else {
            throw Failure("epmd refused the registration (result \(result)): the name is already registered on this host; pick another node name or stop the node using it")
        }
        return creation
    }

    /// The answer to PORT_PLEASE2_REQ, read to the end: the entry, or nil when the name is
    /// not registered.
    public static func decodePortReply(_ buffer: ByteBuffer, alive: String) throws(Failure) -> Entry? {
        var buffer = buffer
        guard let tag = buffer.readInteger(as: UInt8.self), tag == portResponse, let result = buffer.readInteger(as: UInt8.self) else {
            throw Failure("epmd's answer to a port request for '\(alive)' is malformed (\(buffer.readableBytes) bytes)")
        }
        guard result == 0 else { return nil }
        guard let entry = readEntryFields(&buffer) else {
            throw Failure("epmd's answer to a port request for '\(alive)' is truncated")
        }
        return entry
    }

    /// The answer to NAMES_REQ, read to the end: registered names and their ports.
    public static func decodeNamesReply(_ buffer: ByteBuffer) throws(Failure) -> [(name: String, port: Int)] {
        var buffer = buffer
        guard buffer.readInteger(as: UInt32.self) != nil, let text = buffer.readString(length: buffer.readableBytes) else {
            throw Failure("epmd's answer to a names request is malformed")
        }
        return text.split(separator: "\n").compactMap { line in
            // "name NAME at port N"
            let words = line.split(separator: " ")
            guard words.count == 5, words[0] == "name", let port = Int(words[4]) else { return nil }
            return (String(words[1]), port)
        }
    }
}

/// `Len:16 | body`, the framing of epmd requests and of handshake messages.
func lengthPrefixed(_ body: ByteBuffer) -> ByteBuffer {
    var buffer = ByteBuffer()
    buffer.writeInteger(UInt16(body.readableBytes))
    buffer.writeImmutableBuffer(body)
    return buffer
}
