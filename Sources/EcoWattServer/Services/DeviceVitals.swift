import EcoWattProtocol
import Synchronization

/// The fleet table's live columns (issue 20): each device's latest AC power and its upload rate, taken from accepted
/// uploads as they are stored, so listing a page of 100 devices reads no samples. In memory since the server started
/// (a device shows them again after its next upload); only devices with an accepted upload are tracked (bounded by
/// the registry), and deleted or evicted ids are forgotten.
public final class DeviceVitals: Sendable {
    public struct Vitals: Sendable, Equatable {
        /// `Pac` of the newest decoded sample, in W.
        public var powerW: Double?
        public var powerAtMs: Int64?
        /// Uploads per hour over the device's latest uploads; it falls while the device is silent.
        public var uploadsPerHour: Double?
    }

    /// One device's vitals, inline (no allocation of its own): a server that knows a million devices keeps a million
    /// of these. The upload times were an `[Int64]` per device, which cost about 110 bytes of heap per device beside
    /// the table and a copy on every upload (issue 23).
    private struct Entry {
        /// Arrival of the newest upload.
        var newestMs: Int64 = .min
        /// The gaps between the remembered uploads, oldest first (`count - 1` of them), in ms; a gap longer than
        /// `UInt32.max` ms (49 days) counts as that long, and an upload older than the newest as a gap of 0.
        var gaps = InlineArray<7, UInt32>(repeating: 0)
        /// Uploads remembered, at most ``DeviceVitals/remembered``.
        var count: UInt8 = 0
        /// `Pac` of the newest decoded sample (`nan`: none yet), and that sample's time.
        var powerW = Double.nan
        var powerAtMs = Int64.min

        /// An accepted upload at `atMs`, with the newest decoded `Pac` it carried (its sample's time and value).
        mutating func upload(atMs: Int64, power: (atMs: Int64, watts: Double)?) {
            if let power, power.atMs >= powerAtMs { (powerAtMs, powerW) = power }
            guard count > 0 else {
                (newestMs, count) = (atMs, 1)
                return
            }
            let gap = UInt32(clamping: max(0, atMs - newestMs))
            if Int(count) == DeviceVitals.remembered {
                for index in 0..<(gaps.count - 1) { gaps[index] = gaps[index + 1] }
                gaps[gaps.count - 1] = gap
            } else {
                gaps[Int(count) - 1] = gap
                count += 1
            }
            newestMs = max(newestMs, atMs)
        }

        /// Arrival of the oldest upload remembered.
        var oldestMs: Int64 {
            var oldest = newestMs
            for index in 0..<(Int(count) - 1) { oldest -= Int64(gaps[index]) }
            return oldest
        }
    }

    private struct State {
        var devices: [String: Entry] = [:]
        /// Accepted uploads of the whole fleet per second of the last minute, by second modulo 60.
        var seconds = [(second: Int64, count: Int)](repeating: (0, 0), count: 60)
    }

    static let remembered = 8
    private let state = Mutex(State())

    public init() {}

    /// An accepted upload of `deviceID` at `atMs`, with its decoded packets.
    public func accepted(_ deviceID: String, atMs: Int64, packets: [DecodedPacket]) {
        let newest =
            packets
            .filter { !$0.resend }
            .compactMap { packet -> (atMs: Int64, watts: Double)? in
                guard let index = packet.registerLayout.firstIndex(of: Register.pac.rawValue),
                    let last = packet.samples?.last, index < last.count
                else { return nil }
                return (packet.lastSampleEpochMs, Register.pac.scaled(last[index]))
            }
            .max { $0.atMs < $1.atMs }
        let second = atMs / 1000
        state.withLock { state in
            let slot = Int(second.quotientAndRemainder(dividingBy: 60).remainder + 60) % 60
            state.seconds[slot] = state.seconds[slot].second == second ? (second, state.seconds[slot].count + 1) : (second, 1)
            state.devices[deviceID, default: Entry()].upload(atMs: atMs, power: newest)
        }
    }

    /// The fleet's accepted uploads in the 60 seconds before `nowMs`.
    public func fleetUploadsLastMinute(nowMs: Int64) -> Int {
        let now = nowMs / 1000
        return state.withLock { state in
            state.seconds.reduce(0) { $0 + ($1.second > now - 60 && $1.second <= now ? $1.count : 0) }
        }
    }

    /// The device's vitals at `nowMs` (`nil` before its first upload since start).
    public func vitals(_ deviceID: String, nowMs: Int64) -> Vitals? {
        guard let entry = state.withLock({ $0.devices[deviceID] }) else { return nil }
        var rate: Double?
        let (first, last) = (entry.oldestMs, entry.newestMs)
        if entry.count > 1, last > first {
            let intervals = Int64(entry.count - 1)
            // Silent for longer than two of its intervals: the silence counts, so the rate falls toward 0.
            let end = nowMs - last > 2 * (last - first) / intervals ? nowMs : last
            rate = Double(intervals) * 3_600_000 / Double(end - first)
        }
        let power = entry.powerW.isNaN ? nil : entry.powerW
        return Vitals(powerW: power, powerAtMs: power == nil ? nil : entry.powerAtMs, uploadsPerHour: rate)
    }

    public func forget(_ deviceIDs: [String]) {
        state.withLock { state in
            for id in deviceIDs { state.devices[id] = nil }
        }
    }
}
