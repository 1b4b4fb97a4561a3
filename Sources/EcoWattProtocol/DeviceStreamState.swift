/// Per-device decoding state: the packets of the current boot in time order, the encoder model of every boot the
/// device may be in, and the clock that puts its stamps on one time line (issues 14 and 15).
///
/// The temporal (0x71) encoder state depends on every batch the device compressed since boot, in compression (= sample
/// time) order. Packets arrive out of that order after failed uploads (the firmware pushes a failed batch back behind
/// the newer ones, spec §3.6.4), so the chain keeps each boot's packets ordered by time and a model follows them only
/// while it knows there is no batch missing before the next one: a 0x71 packet that arrives before its predecessors
/// waits (stored raw) and is decoded when they arrive. Packets carry no sequence number, so a missing batch is inferred:
/// one can only be missing where a sample fits between two packets, and only while the device's backlog is being
/// re-sent (see ``Disorder``); once the backlog is delivered, a batch still missing is given up.
///
/// A boot signal (registration, boot report) is not authenticated, so it never discards the model: it opens a
/// hypothesis that the device rebooted then (a zeroed encoder) beside the established one, and signed uploads decide
/// (``settle(finalizing:)``), or the device's uptime does when its clock is not synced.
public struct DeviceStreamState: Sendable, Equatable {
    /// The established boot first, then the reboots announced since, by start.
    public var hypotheses = [BootHypothesis(startSerial: Int64.min, startTimeMs: nil)]
    /// Packets of the current boot that a model, a waiting packet or sample times still need, by time.
    public var entries: [ChainEntry] = []
    /// The serial the next stored packet gets.
    public var nextSerial: Int64 = 1
    public var clock = BootClock()
    public var disorder = Disorder()
    /// Stamp and blob hash of the latest packets: a batch re-sent after a lost 200 is acknowledged, not stored twice.
    public var recent: [PacketFingerprint] = []
    /// The last entry trimmed: the predecessor (for sample times) of the first one kept.
    public var trimmed: TrimmedEntry?
    /// When the device last acknowledged a configuration change (a new sampling interval takes effect about then).
    public var configurationAppliedMs: Int64?

    public init() {}

    /// The established boot's model.
    public var context: TemporalContext { hypotheses[0].context }
    /// The established boot's model still follows the encoder.
    public var trusted: Bool { !hypotheses[0].broken }

    /// Reboots announced and not yet decided beyond this many: the oldest announcement is dropped. The latest one is
    /// the likely truth when they are real, the established boot when they are forged, so both stay.
    static let maxOpenReboots = 3
    /// Entries kept at most (the device's ring holds 20 packets, a reboot adds the packets of another boot).
    static let maxEntries = 64
    /// Fingerprints kept: more than the 20 packets a device's ring can re-send.
    static let recentCapacity = 24

    /// A boot signal at `atMs`: opens the hypothesis that the device rebooted then. The several boot messages of one
    /// boot (registration, completion, boot report) open one hypothesis.
    public mutating func bootSignal(atMs: Int64) {
        if let latest = hypotheses.last, latest.startTimeMs != nil, !entries.contains(where: { $0.serial > latest.startSerial }) {
            hypotheses[hypotheses.count - 1].startTimeMs = max(latest.startTimeMs ?? atMs, atMs)
            return
        }
        hypotheses.append(BootHypothesis(startSerial: nextSerial - 1, startTimeMs: atMs))
        if hypotheses.count > Self.maxOpenReboots + 1 { hypotheses.remove(at: 1) }
    }

    /// A signed upload proves that the device's encoder started at `startMs` (its uptime): the reboot announced about
    /// then is established, or one that was not announced; the boots announced after it did not happen.
    mutating func rebootProven(startMs: Int64) {
        let tolerance = BootClock.sameBootToleranceMs * 2
        if let announced = hypotheses.lastIndex(where: {
            ($0.startTimeMs ?? .min) >= startMs - 1000 && ($0.startTimeMs ?? .max) <= startMs + tolerance
        }) {
            hypotheses = [hypotheses[announced]]
        } else {
            hypotheses = [BootHypothesis(startSerial: nextSerial - 1, startTimeMs: startMs)]
        }
        entries.removeAll { $0.serial <= hypotheses[0].startSerial }
    }

    /// The device's uptime shows it has not rebooted since `bootMs`: the reboots announced after that did not happen.
    mutating func noRebootSince(_ bootMs: Int64) {
        let tolerance = BootClock.sameBootToleranceMs * 2
        hypotheses.removeAll { ($0.startTimeMs ?? .min) > bootMs + tolerance }
        if hypotheses.isEmpty { hypotheses = [BootHypothesis(startSerial: Int64.min, startTimeMs: nil)] }
    }

    /// The device acknowledged a configuration change at `atMs` (spec §5.3): samples before it may have been taken at
    /// the old interval, even when the uploads already report the new one.
    public mutating func configurationApplied(atMs: Int64) {
        configurationAppliedMs = atMs
    }

    /// Whether the packet was already stored; remembers it if not.
    public mutating func isResend(_ fingerprint: PacketFingerprint) -> Bool {
        if recent.contains(fingerprint) { return true }
        recent.append(fingerprint)
        if recent.count > Self.recentCapacity { recent.removeFirst(recent.count - Self.recentCapacity) }
        return false
    }

    /// The backlog was delivered (after ``settle(finalizing:)``): where a batch is still missing and the device may have
    /// dropped one, it is given up (sample times no longer spread across it); the entries lose the disorder mark.
    mutating func finalizeDisorder() {
        for index in entries.indices where entries[index].inDisorder && disorder.lossPossible {
            let previous = timingPredecessor(of: index)
            if Self.gap(before: entries[index], after: previous.timeMs, previousInterval: previous.interval) == .suspect {
                entries[index].holeBefore = true
            }
        }
        clearDisorderMarks()
        disorder.lossPossible = false
    }

    /// Without a possible loss, a gap with room for a sample is a sampling gap (a failed Modbus read), not a lost batch.
    mutating func clearDisorderMarks() {
        for index in entries.indices { entries[index].inDisorder = false }
    }

    /// Drops what no model, waiting packet or sample time needs any more.
    mutating func trim() {
        entries.removeAll { $0.serial <= hypotheses[0].startSerial }
        func drop(_ count: Int) {
            guard count > 0 else { return }
            let last = entries[count - 1]
            trimmed = TrimmedEntry(serial: last.serial, timeMs: last.timeMs, intervalSeconds: last.intervalSeconds)
            entries.removeFirst(count)
        }
        if !disorder.isOpen {
            let live = hypotheses.filter { !$0.broken }
            let keepFrom =
                live.isEmpty
                ? entries.count - 1
                : live.map { hypothesis in
                    hypothesis.frontier.flatMap { frontier in entries.firstIndex { $0.serial == frontier } } ?? -1
                }.min() ?? -1
            let waiting = entries.firstIndex { if case .pending = $0.content { true } else { false } } ?? entries.count
            drop(min(keepFrom, waiting - 1))
        }
        while entries.count > Self.maxEntries {
            let dropped = entries[0]
            drop(1)
            for index in hypotheses.indices where dropped.serial > hypotheses[index].startSerial {
                if (hypotheses[index].frontierTimeMs ?? .min) < dropped.timeMs { hypotheses[index].broken = true }
            }
        }
    }
}

/// Whether the device's backlog may be out of order or cut, from the nonces of its uploads (spec §2.3, §3.6.4).
///
/// The firmware spends a nonce per attempt and retries once after 300 ms with the same packets, so a failed attempt
/// and its successful retry change nothing. Two or more failed attempts mean a failed upload period: its (up to 8)
/// packets were pushed back behind the newer ones, and past 20 queued packets the oldest were dropped. The backlog held
/// at the last failure is delivered by three accepted uploads (8 + 8 + 4 of 20 queued packets), or as soon as an
/// accepted upload carries fewer than 8 packets (the queue was empty after it).
public struct Disorder: Sendable, Equatable {
    /// Accepted uploads still needed before the backlog is known to be delivered (0: settled).
    public var remaining: UInt8 = 0
    /// Packets may have been dropped (the ring could have overflowed), not only reordered.
    public var lossPossible = false
    /// Packets of the last accepted upload (a full one may have left a queue behind it).
    public var lastUploadPackets: UInt8 = 0

    public init() {}

    public var isOpen: Bool { remaining > 0 }

    /// Failed attempts that cannot have reordered anything: one attempt and its retry with the same packets.
    static let maxAttemptsWithoutReorder: UInt32 = 1

    /// Before an upload's packets: opens the window after a failed upload period. `failedAttempts` is `nil` when
    /// unknown (the device's first upload, or after an operator reset).
    mutating func begin(failedAttempts: UInt32?, rebootSinceLastUpload: Bool) {
        guard let failedAttempts else {
            remaining = 3
            lossPossible = true
            return
        }
        if failedAttempts > Self.maxAttemptsWithoutReorder {
            remaining = 3
            // 2 attempts per failed period, one packet per period, 20 slots; a full last upload may have left up to 12.
            let queued = (lastUploadPackets >= 8 && !rebootSinceLastUpload ? 12 : 0) + Int(failedAttempts / 2) + 1
            lossPossible = lossPossible || queued > 20
        }
    }

    /// After an accepted upload of `packets` packets: true when the backlog is now delivered.
    mutating func end(packets: Int) -> Bool {
        lastUploadPackets = UInt8(min(packets, 255))
        guard remaining > 0 else { return true }
        remaining = packets < 8 ? 0 : remaining - 1
        return remaining == 0
    }
}

/// What sample times still need of a trimmed entry.
public struct TrimmedEntry: Sendable, Equatable {
    public var serial: Int64
    public var timeMs: Int64
    public var intervalSeconds: Int
}

/// A packet's identity within a boot: a 64-bit FNV-1a hash of its stamp, sample count and blob (8 bytes persisted per
/// packet remembered; a collision between two of a device's latest packets is a 2^-64 event).
public struct PacketFingerprint: Sendable, Equatable {
    public var hash: UInt64

    public init(timestamp: UInt32, sampleCount: Int, blob: [UInt8]) {
        var hash: UInt64 = 14_695_981_039_346_656_037
        func mix(_ byte: UInt8) { hash = (hash ^ UInt64(byte)) &* 1_099_511_628_211 }
        for shift in stride(from: 0, to: 32, by: 8) { mix(UInt8(truncatingIfNeeded: timestamp >> UInt32(shift))) }
        for shift in stride(from: 0, to: 16, by: 8) { mix(UInt8(truncatingIfNeeded: sampleCount >> shift)) }
        for byte in blob { mix(byte) }
        self.hash = hash
    }

    init(hash: UInt64) {
        self.hash = hash
    }
}
