/// How the packet timestamps of one device boot map onto epoch time (spec §0.6, §3.6.5).
///
/// A device without NTP stamps its packets with `millis()` since boot and its uploads with seconds since boot; when
/// NTP syncs (without a reboot) it switches to epoch time, while packets stamped before the switch may still wait in
/// its backlog. The boot's start in epoch time is estimated from its first unsynced upload (arrival time − uptime) and
/// kept for the boot: stamps counted from boot then order exactly among themselves, and within the estimate's error (the
/// network delay of one upload and the uptime's whole seconds) against those taken after the sync.
public struct BootClock: Sendable, Equatable {
    /// Estimated epoch ms at which this boot's `millis()` was 0, known once an unsynced upload arrived.
    public var bootEpochMs: Int64?
    /// Arrival of the last upload whose own timestamp was unsynced: packets stamped in epoch time are later than the
    /// sync, so later than (about) this.
    public var lastUnsyncedArrivalMs: Int64?

    public init() {}

    /// How far apart two estimates of one boot's start may be (network delay, seconds truncated by the device) before
    /// they name two boots.
    public static let sameBootToleranceMs: Int64 = 15_000
    /// A synced stamp this far ahead of the arrival time is implausible (both clocks are NTP-synced; an hour covers a
    /// device clock that runs ahead).
    static let futureSlackMs: Int64 = 3_600_000
    /// The oldest a packet in the device's backlog can be: 20 ring slots × the longest upload period the watchdog
    /// allows (590 s) is 3.3 h; 6 h leaves room for a lost 200 and its resend.
    static let maxBacklogAgeMs: Int64 = 6 * 3_600_000
    static let dayMs: UInt32 = 86_400_000

    /// The boot start an unsynced upload implies: its uptime is `seconds` (whole seconds of a `millis()` that wraps
    /// every 2^32 ms), so the boot began half a second before `arrival − seconds` on average. `nil` for a number no
    /// device sends (the upload's 32-bit range).
    public func bootEstimate(uptimeSeconds seconds: Int64, arrivalMs: Int64) -> Int64? {
        guard PacketLimits.uint32.contains(seconds) else { return nil }
        let reported = UInt32(truncatingIfNeeded: seconds * 1000)
        let expected = bootEpochMs.map { arrivalMs - $0 } ?? seconds * 1000
        let uptime = DeviceStreamDecoder.reconstructEpochMs(reported, near: expected)
        return arrivalMs - uptime - 500
    }

    /// Epoch ms (possibly estimated) of a packet stamp `timestamp` that arrived at `arrivalMs` in an upload whose own
    /// time was synced (`uploadSynced`) or not.
    public mutating func time(of timestamp: UInt32, uploadSynced: Bool, arrivalMs: Int64) -> (ms: Int64, estimated: Bool) {
        let epoch = DeviceStreamDecoder.reconstructEpochMs(timestamp, near: arrivalMs)
        if bootEpochMs == nil {
            // A stamp counted from boot is small (the device has been up for minutes); an epoch stamp cut to 32 bits
            // is below a day only one time in fifty, and then it is also close to the arrival time.
            guard uploadSynced, timestamp < Self.dayMs,
                epoch > arrivalMs + Self.futureSlackMs || epoch < arrivalMs - Self.maxBacklogAgeMs
            else {
                return (epoch, !uploadSynced)
            }
            // The first upload came after a late sync while the device still held stamps from before it: they are far
            // from the arrival time and counted from boot. The boot began at most that long before the arrival.
            bootEpochMs = arrivalMs - Int64(timestamp)
        }
        let boot = bootEpochMs ?? 0
        let sinceBoot = boot + DeviceStreamDecoder.reconstructEpochMs(timestamp, near: max(0, arrivalMs - boot))
        guard uploadSynced else { return (sinceBoot, true) }
        // A synced upload of a boot that started unsynced: a stamp taken after the sync is later than the last unsynced
        // upload; one from before the sync is counted from boot and not after the arrival.
        // Of the two readings, the one that is plausible; if neither is, the one that misses by less.
        let epochMiss =
            max(0, (lastUnsyncedArrivalMs ?? boot) - Self.sameBootToleranceMs - epoch) + max(0, epoch - arrivalMs - Self.futureSlackMs)
        let bootMiss = max(0, boot - 1000 - sinceBoot) + max(0, sinceBoot - arrivalMs - Self.sameBootToleranceMs)
        return epochMiss <= bootMiss ? (epoch, false) : (sinceBoot, true)
    }
}
