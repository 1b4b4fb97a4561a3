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

    /// Every `method` label the firmware writes (spec §3.3 step 4).
    public static let methodLabels: Set<String> = ["bitpack", "dictionary", "temporal", "semantic", "raw"]

    /// The label a packet is counted and stored under: the device's own when it is one the firmware writes, the
    /// marker's when the device sent none, else `other`. A fixed set, so that a device cannot create labels (each
    /// label is a statistics entry and a metrics series).
    public static func methodLabel(declared: String?, marker: UInt8?) -> String {
        guard let declared else { return marker.flatMap(CompressionMarker.init(rawValue:))?.method ?? "raw" }
        return methodLabels.contains(declared) ? declared : "other"
    }

    /// The metrics label of a first blob byte: a marker the firmware writes as `0x..`, `none` without a blob, else
    /// `other` (a fixed set of labels, whatever the device sends).
    public static func markerLabel(_ byte: UInt8?) -> String {
        guard let byte else { return "none" }
        return CompressionMarker(rawValue: byte) != nil ? HexCoding.byteLabel(byte) : "other"
    }

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
