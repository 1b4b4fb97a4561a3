/// Why a compressed blob could not be decoded.
public enum CodecError: Error, Sendable, Equatable {
    /// The blob ends before all values are present.
    case tooShort(needed: Int, have: Int)
    /// The blob's structure is inconsistent (bad width, index out of table, bad tag, …).
    case corrupt(String)
}

/// Compression markers the firmware writes as the first blob byte (spec §3.3).
public enum CompressionMarker: UInt8, Sendable, CaseIterable {
    case bitPack = 0x01
    case semanticRLE = 0x50
    case temporalBase = 0x70
    case temporalDelta = 0x71
    case dictionary = 0xD0

    /// The `method` label the firmware attaches to a blob with this marker.
    public var method: String {
        switch self {
        case .bitPack: "bitpack"
        case .semanticRLE: "semantic"
        case .temporalBase, .temporalDelta: "temporal"
        case .dictionary: "dictionary"
        }
    }
}
