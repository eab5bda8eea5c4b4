/// External Term Format tag bytes (ERTS `erl_ext_dist`).
public enum ETFTag {
    public static let version: UInt8 = 131
    public static let newFloat: UInt8 = 70
    public static let bitBinary: UInt8 = 77
    public static let compressed: UInt8 = 80
    public static let atomCacheRef: UInt8 = 82
    public static let newPid: UInt8 = 88
    public static let newPort: UInt8 = 89
    public static let newerReference: UInt8 = 90
    public static let smallInteger: UInt8 = 97
    public static let integer: UInt8 = 98
    public static let float: UInt8 = 99
    public static let atom: UInt8 = 100
    public static let reference: UInt8 = 101
    public static let port: UInt8 = 102
    public static let pid: UInt8 = 103
    public static let smallTuple: UInt8 = 104
    public static let largeTuple: UInt8 = 105
    public static let `nil`: UInt8 = 106
    public static let string: UInt8 = 107
    public static let list: UInt8 = 108
    public static let binary: UInt8 = 109
    public static let smallBig: UInt8 = 110
    public static let largeBig: UInt8 = 111
    public static let newFun: UInt8 = 112
    public static let export: UInt8 = 113
    public static let newReference: UInt8 = 114
    public static let smallAtom: UInt8 = 115
    public static let map: UInt8 = 116
    public static let fun: UInt8 = 117
    public static let atomUTF8: UInt8 = 118
    public static let smallAtomUTF8: UInt8 = 119
    public static let v4Port: UInt8 = 120
}
