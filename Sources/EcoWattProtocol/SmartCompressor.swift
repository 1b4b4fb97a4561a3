/// The firmware's `compressWithSmartSelection` (spec §3.3) with its per-boot temporal state.
///
/// Every batch runs dictionary, temporal (which updates the state even when it loses), semantic and bit-pack, in that
/// order, and keeps the first result with the strictly smallest size. Create a fresh compressor at every simulated
/// boot; feed it the batches in order.
public struct SmartCompressor: Sendable {
    /// The temporal state as the firmware holds it after the batches compressed so far.
    public private(set) var context = TemporalContext()

    public init() {}

    /// A compressor whose temporal state is `context` (e.g. to resume a boot sequence or to benchmark one batch).
    public init(context: TemporalContext) {
        self.context = context
    }

    /// Compresses one sample-major batch: `values[k·R + j]` is register `selection[k·R + j]` of sample `k`.
    public mutating func compress(_ values: [UInt16], selection: [Int]) -> [UInt8] {
        precondition(values.count == selection.count, "one register id per value")
        guard !values.isEmpty else { return [] }
        let candidates = [
            DictionaryEncoder.encode(values),
            TemporalEncoder.encode(values, selection: selection, context: &context),
            SemanticRLEEncoder.encode(values, selection: selection),
            BitPackEncoder.encode(values),
        ]
        // The firmware compares float ratios `8·len / (16·count)`; same count, so the shortest blob wins, ties first.
        var best = candidates[0]
        for candidate in candidates.dropFirst() where candidate.count < best.count {
            best = candidate
        }
        return best
    }

    /// The packet label the firmware derives from the first byte (spec §3.3 step 4).
    public static func method(of blob: [UInt8]) -> String {
        guard let first = blob.first else { return "raw" }
        // Anything that is not a known marker is labelled "bitpack" by the firmware.
        return CompressionMarker(rawValue: first)?.method ?? "bitpack"
    }
}
