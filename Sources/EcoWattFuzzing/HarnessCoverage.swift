import Synchronization

/// Counts which parts of the device-input path the harness reached: the proof, printed after a fuzz run, that every
/// codec, the temporal model and both kinds of time reconstruction were exercised (not only parsed and refused).
public final class HarnessCoverage: Sendable {
    public enum Path: String, CaseIterable, Sendable, Comparable {
        case envelopeParsed = "envelope parsed"
        case envelopeRejected = "envelope rejected"
        case macVerified = "MAC verified (fleet key)"
        case payloadParsed = "inner JSON parsed"
        case payloadRejected = "inner JSON rejected"
        case timeSynced = "time reconstruction, synced clock (32-bit ms unwrapped)"
        case timeUnsynced = "time reconstruction, unsynced clock (arrival estimate)"
        case packetBitPack = "packet decoded: 0x01 bit-pack"
        case packetBitPackTruncated = "packet decoded: 0x01 bit-pack cut at 189 bytes"
        case packetDictionary = "packet decoded: 0xD0 dictionary"
        case packetDictionaryTruncated = "packet decoded: 0xD0 dictionary cut at 189 bytes (whole samples)"
        case packetSemantic = "packet decoded: 0x50 semantic RLE"
        case packetTemporalBase = "packet decoded: 0x70 temporal base"
        case packetTemporalDelta = "packet decoded: 0x71 temporal delta (per-device model)"
        case temporalStateUnknown = "packet undecodable: temporal state unknown"
        case packetRedecoded = "0x71 decoded when its predecessors arrived (backlog out of order)"
        case resend = "resent packet recognised (stored once)"
        case bootSignal = "boot signal (reboot hypothesis beside the model)"
        case packetUndecodable = "packet undecodable: other reasons"
        case codecBitPack = "codec round trip: bit-pack"
        case codecDictionary = "codec round trip: dictionary"
        case codecSemantic = "codec tolerance: semantic RLE"
        case codecTemporalBase = "codec: temporal base"
        case codecTemporalDelta = "codec round trip: temporal delta"
        case jsonParsed = "JSON parse/write round trip"

        public static func < (lhs: Path, rhs: Path) -> Bool {
            allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
        }

        /// The paths a fuzz run must reach: every codec through an upload, the temporal model, both time
        /// reconstructions, and the direct codec checks.
        public static let required: [Path] = [
            .envelopeParsed, .payloadParsed, .timeSynced, .timeUnsynced, .packetBitPack, .packetBitPackTruncated,
            .packetDictionary, .packetSemantic, .packetTemporalBase, .packetTemporalDelta, .temporalStateUnknown, .bootSignal,
            .codecBitPack, .codecDictionary, .codecSemantic, .codecTemporalBase, .codecTemporalDelta, .jsonParsed,
        ]
    }

    private let counts = Mutex<[Path: Int]>([:])

    public init() {}

    func hit(_ path: Path) {
        counts.withLock { $0[path, default: 0] += 1 }
    }

    /// Inputs that reached each path so far.
    public var snapshot: [Path: Int] { counts.withLock { $0 } }

    public func reset() { counts.withLock { $0 = [:] } }

    /// Required paths not reached yet.
    public var missing: [Path] {
        let snapshot = snapshot
        return Path.required.filter { (snapshot[$0] ?? 0) == 0 }
    }

    /// One line per path with its count, required paths marked.
    public var report: String {
        let snapshot = snapshot
        return Path.allCases.map { path in
            let count = snapshot[path] ?? 0
            let mark = Path.required.contains(path) ? (count > 0 ? "ok " : "MISSING ") : ""
            return "  \(mark)\(path.rawValue): \(count)"
        }.joined(separator: "\n")
    }
}
