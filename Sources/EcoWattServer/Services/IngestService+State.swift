import Crypto
import EcoWattProtocol
import EcoWattStorage

/// Which device ids uploads are accepted from (`device_admission`).
public enum DeviceAdmission: String, Sendable, CaseIterable {
    /// Any id signed with the fleet key (or its own key) is accepted and registered (the default, as before).
    case open
    /// Only provisioned or operator-accepted ids (and devices that uploaded before the switch); others get 403 and
    /// are listed as pending.
    case known
}

/// A device's keys as the ingest path uses them.
struct DeviceKeys: Sendable {
    var current: EnvelopeKey?
    var next: EnvelopeKey?
    var revoked: Bool

    init(_ credential: DeviceCredential) {
        current = credential.key.map { EnvelopeKey(SymmetricKey(data: $0)) }
        next = credential.nextKey.map { EnvelopeKey(SymmetricKey(data: $0)) }
        revoked = credential.revokedAtMs != nil
    }
}

/// Ingest counters since the server started.
public struct IngestCounters: Sendable, Equatable {
    public var accepted = 0
    /// Refused envelopes by ``SecurityError/category`` (`mac`, `replay`, `missing_field`, …).
    public var rejected: [String: Int] = [:]
    public var invalidPayload = 0
    public var storageFailures = 0
    /// Packets received by marker (`0x01`, `0xD0`, …).
    public var packets: [String: Int] = [:]
    /// Undecodable packets by reason.
    public var undecodable: [String: Int] = [:]
    public var samples = 0
    /// Packets acknowledged as resends of a stored batch (a lost 200), not stored again.
    public var resent = 0
    /// Packets stored raw that a later upload decoded (their predecessors arrived late).
    public var completed = 0
    /// Packets by compression method (`bitpack`, `dictionary`, …), with byte totals.
    public var methods: [String: MethodCounts] = [:]

    /// Every envelope that reached validation.
    public var validations: Int { accepted + invalidPayload + rejected.values.reduce(0, +) }

    /// Counts an accepted upload. Labels come from fixed sets (``CompressionMarker/markerLabel(_:)``,
    /// ``CompressionMarker/methodLabel``), and sums saturate: a device cannot add statistics entries or overflow a
    /// counter.
    mutating func add(_ outcome: IngestOutcome) {
        accepted += 1
        resent = PacketLimits.adding(resent, outcome.resent)
        completed = PacketLimits.adding(completed, outcome.completed)
        for update in outcome.updates {
            samples = PacketLimits.adding(samples, update.samples?.count ?? 0)
        }
        for packet in outcome.packets where !packet.resend {
            let marker = CompressionMarker.markerLabel(packet.marker)
            packets[marker, default: 0] += 1
            if let reason = packet.reason { undecodable[reason.rawValue, default: 0] += 1 }
            samples = PacketLimits.adding(samples, packet.samples?.count ?? 0)
            var method = methods[packet.method, default: MethodCounts()]
            method.packets += 1
            if packet.samples != nil { method.decoded += 1 }
            method.originalBytes = PacketLimits.adding(method.originalBytes, packet.originalSize)
            method.compressedBytes = PacketLimits.adding(method.compressedBytes, packet.compressedSize)
            methods[packet.method] = method
        }
    }
}

/// Packets of one compression method since start.
public struct MethodCounts: Sendable, Equatable {
    public var packets = 0
    /// Packets with decoded values.
    public var decoded = 0
    /// `original_size_bytes` the device reported.
    public var originalBytes = 0
    /// `compressed_size_bytes` the device reported.
    public var compressedBytes = 0
}

/// ``IngestService``'s per-device states with use order and commits in flight, so that it can be trimmed without
/// dropping a state that is ahead of the store.
struct DeviceStateCache {
    private struct Entry {
        var state: DeviceIngestState
        var lastUse: UInt64
        var inFlight = 0
    }
    private var entries: [String: Entry] = [:]
    private var clock: UInt64 = 0

    var count: Int { entries.count }

    subscript(deviceID: String) -> DeviceIngestState? {
        mutating get {
            clock += 1
            entries[deviceID]?.lastUse = clock
            return entries[deviceID]?.state
        }
        set {
            clock += 1
            if let newValue {
                entries[deviceID, default: Entry(state: newValue, lastUse: clock)].state = newValue
                entries[deviceID]?.lastUse = clock
            } else {
                entries[deviceID] = nil
            }
        }
    }

    mutating func beginCommit(_ deviceID: String) { entries[deviceID]?.inFlight += 1 }
    mutating func endCommit(_ deviceID: String) {
        if let inFlight = entries[deviceID]?.inFlight { entries[deviceID]?.inFlight = max(0, inFlight - 1) }
    }

    /// Above `limit`, drops the least recently used idle entries down to nine tenths of it (so trimming is rare).
    mutating func trim(to limit: Int) {
        guard entries.count > limit else { return }
        entries.removeOldest(keeping: limit * 9 / 10, age: \.lastUse, removable: { $0.inFlight == 0 })
    }
}
