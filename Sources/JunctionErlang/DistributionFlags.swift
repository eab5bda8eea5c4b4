/// Erlang distribution capability flags (`spec/erlang-distribution.md` §1.3). What two
/// nodes use is the intersection of what each offered.
public struct DistributionFlags: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let published = Self(rawValue: 0x1)
    public static let atomCache = Self(rawValue: 0x2)
    public static let extendedReferences = Self(rawValue: 0x4)
    public static let distMonitor = Self(rawValue: 0x8)
    public static let funTags = Self(rawValue: 0x10)
    public static let distMonitorName = Self(rawValue: 0x20)
    public static let hiddenAtomCache = Self(rawValue: 0x40)
    public static let newFunTags = Self(rawValue: 0x80)
    public static let extendedPidsPorts = Self(rawValue: 0x100)
    public static let exportPtrTag = Self(rawValue: 0x200)
    public static let bitBinaries = Self(rawValue: 0x400)
    public static let newFloats = Self(rawValue: 0x800)
    public static let unicodeIO = Self(rawValue: 0x1000)
    public static let distHeaderAtomCache = Self(rawValue: 0x2000)
    public static let smallAtomTags = Self(rawValue: 0x4000)
    public static let utf8Atoms = Self(rawValue: 0x10000)
    public static let mapTag = Self(rawValue: 0x20000)
    public static let bigCreation = Self(rawValue: 0x40000)
    public static let sendSender = Self(rawValue: 0x80000)
    public static let bigSeqTraceLabels = Self(rawValue: 0x100000)
    public static let exitPayload = Self(rawValue: 0x400000)
    public static let fragments = Self(rawValue: 0x800000)
    public static let handshake23 = Self(rawValue: 0x1000000)
    public static let unlinkID = Self(rawValue: 0x2000000)
    public static let mandatory25Digest = Self(rawValue: 0x4000000)
    public static let spawn = Self(rawValue: 1 << 32)
    public static let nameMe = Self(rawValue: 1 << 33)
    public static let v4NC = Self(rawValue: 1 << 34)
    public static let alias = Self(rawValue: 1 << 35)

    /// What OTP 25 requires of a peer (`erts_internal:get_dflags()`): 0x1070f94.
    public static let mandatory25: Self = [
        .extendedReferences, .funTags, .newFunTags, .extendedPidsPorts, .exportPtrTag, .bitBinaries, .newFloats, .utf8Atoms, .mapTag,
        .bigCreation, .handshake23,
    ]
    /// What OTP 26 and later require: the above plus UNLINK_ID and V4_NC (0x403070f94).
    public static let mandatory26: Self = mandatory25.union([.unlinkID, .v4NC])

    /// What a Junction node offers: OTP 26's mandatory set and the digest flag
    /// (0x407070f94), plus the features this stack implements. PUBLISHED is added for
    /// a visible node.
    public static let offered: Self = mandatory26.union([
        .mandatory25Digest, .distMonitor, .distMonitorName, .distHeaderAtomCache, .smallAtomTags, .sendSender, .exitPayload, .fragments, .alias,
    ])

    /// What a peer must offer for a Junction node to talk to it. A peer that offers
    /// MANDATORY_25_DIGEST stands for all of OTP 25's mandatory flags.
    public func missingMandatory() -> Self {
        if contains(.mandatory25Digest) { return [] }
        return Self.mandatory25.subtracting(self)
    }

    static let names: [(Self, String)] = [
        (.published, "PUBLISHED"), (.atomCache, "ATOM_CACHE"), (.extendedReferences, "EXTENDED_REFERENCES"), (.distMonitor, "DIST_MONITOR"),
        (.funTags, "FUN_TAGS"), (.distMonitorName, "DIST_MONITOR_NAME"), (.hiddenAtomCache, "HIDDEN_ATOM_CACHE"), (.newFunTags, "NEW_FUN_TAGS"),
        (.extendedPidsPorts, "EXTENDED_PIDS_PORTS"), (.exportPtrTag, "EXPORT_PTR_TAG"), (.bitBinaries, "BIT_BINARIES"), (.newFloats, "NEW_FLOATS"),
        (.unicodeIO, "UNICODE_IO"), (.distHeaderAtomCache, "DIST_HDR_ATOM_CACHE"), (.smallAtomTags, "SMALL_ATOM_TAGS"), (.utf8Atoms, "UTF8_ATOMS"),
        (.mapTag, "MAP_TAG"), (.bigCreation, "BIG_CREATION"), (.sendSender, "SEND_SENDER"), (.bigSeqTraceLabels, "BIG_SEQTRACE_LABELS"),
        (.exitPayload, "EXIT_PAYLOAD"), (.fragments, "FRAGMENTS"), (.handshake23, "HANDSHAKE_23"), (.unlinkID, "UNLINK_ID"),
        (.mandatory25Digest, "MANDATORY_25_DIGEST"), (.spawn, "SPAWN"), (.nameMe, "NAME_ME"), (.v4NC, "V4_NC"), (.alias, "ALIAS"),
    ]

    public var description: String {
        let known = Self.names.filter { contains($0.0) }.map(\.1)
        let unknown = subtracting(Self.names.reduce(into: Self()) { $0.formUnion($1.0) })
        return (known + (unknown.isEmpty ? [] : [String(unknown.rawValue, radix: 16)])).joined(separator: " ")
    }
}
