/// Why a packet was stored raw instead of decoded.
public enum UndecodableReason: String, Sendable, Codable, Equatable {
    /// 0x71 while the per-device encoder model cannot be trusted (reboot missed, packet lost, reordered, lossy).
    case temporalStateUnknown = "temporal_state_unknown"
    /// A non-bit-pack blob cut to 189 bytes on the wire.
    case truncatedNonBitpack = "truncated_non_bitpack"
    /// The first byte is no marker the firmware emits.
    case unknownMarker = "unknown_marker"
    /// Metadata that cannot describe the blob (layout length ≠ register_count, ids out of range, …).
    case inconsistentMetadata = "inconsistent_metadata"
    /// The blob is structurally invalid for its marker.
    case corruptBlob = "corrupt_blob"
}

/// One packet of an upload after decoding.
public struct DecodedPacket: Sendable {
    /// Position in `compressed_data`.
    public var index: Int
    /// First blob byte, if any.
    public var marker: UInt8?
    /// `method` as labelled by the device (or derived from the marker).
    public var method: String
    public var registerLayout: [Int]
    public var sampleCount: Int
    /// Decoded raw register values, one row per sample in layout order; `nil` when undecodable.
    /// For a truncated bit-pack blob only the complete samples present.
    public var samples: [[UInt16]]?
    /// Epoch milliseconds of each row of ``samples``.
    public var sampleTimesMs: [Int64]
    /// Reconstructed epoch milliseconds of the packet's last sample.
    public var lastSampleEpochMs: Int64
    /// `true` for lossy 0x50 values.
    public var approximate: Bool
    /// The wire blob is shorter than `compressed_size_bytes`.
    public var truncated: Bool
    public var reason: UndecodableReason?
    /// Human-readable detail for ``reason``.
    public var detail: String?
    /// The blob as received (kept for undecodable packets).
    public var blob: [UInt8]
    public var compressedSize: Int
    public var originalSize: Int
    /// Device-scoped number of the stored packet (its key when a later upload decodes or re-times it); 0 for a resend.
    public var serial: Int64 = 0
    /// The same batch (stamp, size, blob) was already stored: a resend after a lost 200, acknowledged, not stored.
    public var resend = false
    /// The sample times are estimated from the arrival time (the device clock was not synced).
    public var timeEstimated = false
    /// A later upload may still re-time its samples (it arrived while the backlog was out of order, or while a reboot
    /// was undecided): the store keeps where its samples are.
    public var mayBeRetimed = false

    public init(
        index: Int,
        marker: UInt8?,
        method: String,
        registerLayout: [Int],
        sampleCount: Int,
        samples: [[UInt16]]?,
        sampleTimesMs: [Int64],
        lastSampleEpochMs: Int64,
        approximate: Bool,
        truncated: Bool,
        reason: UndecodableReason?,
        detail: String?,
        blob: [UInt8],
        compressedSize: Int,
        originalSize: Int
    ) {
        self.index = index
        self.marker = marker
        self.method = method
        self.registerLayout = registerLayout
        self.sampleCount = sampleCount
        self.samples = samples
        self.sampleTimesMs = sampleTimesMs
        self.lastSampleEpochMs = lastSampleEpochMs
        self.approximate = approximate
        self.truncated = truncated
        self.reason = reason
        self.detail = detail
        self.blob = blob
        self.compressedSize = compressedSize
        self.originalSize = originalSize
    }

    /// Compression ratio the device achieved (`compressed / original`).
    public var ratio: Double { Self.ratio(compressed: compressedSize, original: originalSize) }

    /// `compressed / original` as the device reports sizes (0 when it reports no original size): the ratio every stored
    /// and published form of a packet shows.
    public static func ratio(compressed: Int, original: Int) -> Double {
        original > 0 ? Double(compressed) / Double(original) : 0
    }
    public var isDecoded: Bool { samples != nil }
    /// Samples of the batch that were cut on the wire and are lost (a cut bit-pack or dictionary blob keeps its first
    /// whole samples).
    public var lostSamples: Int { samples.map { max(0, sampleCount - $0.count) } ?? 0 }
}
