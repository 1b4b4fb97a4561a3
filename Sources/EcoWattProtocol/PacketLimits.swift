/// The ranges every number of an upload must fall in before any arithmetic uses it.
///
/// Uploads are signed with a key that may be public (the firmware's default fleet key), so every number in them is
/// hostile: a value outside these ranges makes its packet undecodable (`inconsistent_metadata`) or, for upload-level
/// fields, is ignored — never a trap, and never a non-200 for an authentic upload (spec §3.6.5). The bounds come from
/// the firmware (spec §0.7, §3.2, §3.6) with headroom, and they are small enough that every product the decoder forms
/// from them (times, sizes, counts) fits in 64 bits.
public enum PacketLimits {
    /// `register_count`: the firmware has ten registers (`RegID` 0...9).
    public static let registerCount = 1...10
    /// Register ids in `register_layout`.
    public static let registerIDs = 0...9
    /// `register_count × sample_count`: the firmware's maximum is 50 samples × 10 registers = 500; a blob on the wire is
    /// at most 189 bytes. 4096 leaves room without letting a packet claim millions of values.
    public static let maxValues = 4096
    /// `compressed_size_bytes`: the largest blob the firmware can build is about 1 KB (500 values × 16 bits).
    public static let compressedSizeBytes = 0...65_536
    /// 32-bit device fields (`timestamp` per packet: epoch ms mod 2^32 or `millis()`; top-level `timestamp`: s).
    public static let uint32 = Int64(0)...Int64(UInt32.max)
    /// `sampling_interval` in whole seconds: 0 (a poll period under one second) up to a day.
    public static let samplingIntervalSeconds = 0...86_400

    /// The samples a packet may claim for `registers` registers (no multiplication, so nothing can overflow).
    public static func sampleCount(registers: Int) -> ClosedRange<Int> {
        1...(maxValues / max(1, registers))
    }

    /// Throws unless `count` is a value count a decoder may allocate for.
    public static func checkValueCount(_ count: Int) throws(CodecError) {
        guard (0...maxValues).contains(count) else { throw .corrupt("value count \(count) outside 0...\(maxValues)") }
    }

    /// Throws unless every register id of `selection` is 0...9 and there are not too many of them.
    public static func checkSelection(_ selection: [Int]) throws(CodecError) {
        try checkValueCount(selection.count)
        guard selection.allSatisfy({ registerIDs.contains($0) }) else { throw .corrupt("register id outside \(registerIDs)") }
    }

    /// Saturating addition for counters fed by device-supplied sizes: a counter never traps, it stops at `Int.max`.
    public static func adding(_ lhs: Int, _ rhs: Int) -> Int {
        let (sum, overflow) = lhs.addingReportingOverflow(rhs)
        return overflow ? (rhs < 0 ? Int.min : Int.max) : sum
    }
}
