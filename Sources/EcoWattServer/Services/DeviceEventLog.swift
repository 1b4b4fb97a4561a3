import Synchronization

/// What went wrong with devices (issue 20): refused uploads by reason (bad signatures, replays, revoked or not admitted
/// devices, …), undecodable packets, failed updates and overdue commands — the latest few per device, and counts per reason per minute
/// over the last day for the whole fleet. The dashboard's fleet "problems" count, its Security page and each device's
/// security events read it.
///
/// In memory, since the server started (a restart empties it; the counters in `/metrics` are the durable record), and
/// bounded: anyone can make an upload fail under any device id, so at most `maxDevices` ids keep events (beyond it the
/// eighth of them whose latest events are oldest are dropped), each its latest `perDevice`; reasons come from closed sets (security
/// categories, decode reasons, OTA outcomes), so the per-minute counts cannot grow labels.
public final class DeviceEventLog: Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        /// An upload refused: signature, replay, revoked, not admitted, malformed.
        case security
        /// A packet of an accepted upload that could not be decoded.
        case decode
        /// An OTA session that ended in failure.
        case update
        /// A command dispatched to the device without a result in time.
        case command
    }

    public struct Event: Sendable, Equatable {
        public var atMs: Int64
        public var deviceID: String
        public var kind: Kind
        public var reason: String
        public var address: String?

        public init(atMs: Int64, deviceID: String, kind: Kind, reason: String, address: String? = nil) {
            self.atMs = atMs
            self.deviceID = deviceID
            self.kind = kind
            self.reason = reason
            self.address = address
        }
    }

    /// Counts by `kind/reason` in the minute starting at `minuteMs`.
    public struct Minute: Sendable, Equatable {
        public var minuteMs: Int64
        public var counts: [String: Int]
    }

    static let minuteMs: Int64 = 60_000
    static let dayMs: Int64 = 86_400_000

    private struct Reason: Hashable {
        var kind: Kind
        var reason: String

        var label: String { "\(kind.rawValue)/\(reason)" }
    }

    private struct State {
        var devices: [String: [Event]] = [:]
        var minutes: [Int64: [Reason: Int]] = [:]
    }

    public let maxDevices: Int
    public let perDevice: Int
    private let state = Mutex(State())

    public init(maxDevices: Int = 4096, perDevice: Int = 20) {
        self.maxDevices = max(1, maxDevices)
        self.perDevice = max(1, perDevice)
    }

    public func record(_ event: Event) {
        let minute = event.atMs - event.atMs % Self.minuteMs
        let perDevice = perDevice
        state.withLock { state in
            // A full log drops an eighth at once: finding the single quietest device for every new id scanned all
            // `maxDevices` ids under the lock, for each refused upload of an attacker cycling through ids.
            if state.devices[event.deviceID] == nil, state.devices.count >= maxDevices {
                state.devices.removeOldest(keeping: maxDevices - max(1, maxDevices / 8), age: { $0.last?.atMs ?? 0 })
            }
            // In place: a copy taken out of the dictionary and stored back copied the device's events on every append.
            func append(_ events: inout [Event]) {
                events.append(event)
                if events.count > perDevice { events.removeFirst(events.count - perDevice) }
            }
            append(&state.devices[event.deviceID, default: []])
            state.minutes[minute, default: [:]][Reason(kind: event.kind, reason: event.reason), default: 0] += 1
            if state.minutes.count > 1440 {
                state.minutes = state.minutes.filter { $0.key > minute - Self.dayMs }
            }
        }
    }

    /// The device's latest events, newest first.
    public func recent(deviceID: String) -> [Event] {
        state.withLock { $0.devices[deviceID] ?? [] }.reversed()
    }

    /// The fleet's latest events, newest first, of `kind` when given.
    public func latest(kind: Kind?, limit: Int) -> [Event] {
        let events = state.withLock { state in
            state.devices.values.flatMap { $0.filter { kind == nil || $0.kind == kind } }
        }
        return Array(events.sorted { $0.atMs > $1.atMs }.prefix(limit))
    }

    /// Per-minute counts from `sinceMs` on, oldest first (minutes without events are absent).
    public func timeline(sinceMs: Int64) -> [Minute] {
        state.withLock { state in
            state.minutes.filter { $0.key + Self.minuteMs > sinceMs }.map { minute in
                Minute(minuteMs: minute.key, counts: Dictionary(uniqueKeysWithValues: minute.value.map { ($0.key.label, $0.value) }))
            }
        }
        .sorted { $0.minuteMs < $1.minuteMs }
    }

    /// Events since `sinceMs` by device (devices without any are absent).
    public func problemCounts(sinceMs: Int64) -> [String: Int] {
        state.withLock { state in
            state.devices.compactMapValues { events in
                let count = events.reduce(0) { $0 + ($1.atMs >= sinceMs ? 1 : 0) }
                return count > 0 ? count : nil
            }
        }
    }

    /// Forgets the devices an operator deleted or the registry evicted.
    public func forget(_ deviceIDs: [String]) {
        state.withLock { state in
            for id in deviceIDs { state.devices[id] = nil }
        }
    }
}

/// Uploads as the dashboard sees them: a refused one is a security event of its device, an accepted one is a new
/// sample, the device's latest power and upload rate (and its undecodable packets are decode events).
struct UploadWatch: Sendable {
    let log: DeviceEventLog
    let vitals: DeviceVitals
    let live: LiveEvents
    let rollouts: RolloutService

    func refused(_ deviceID: String, _ error: IngestError, address: String?, atMs: Int64) {
        let reason: String
        switch error {
        case .security(let security): reason = security.category
        case .storage: return  // the server's problem, not the device's
        default: reason = error.code
        }
        log.record(DeviceEventLog.Event(atMs: atMs, deviceID: deviceID, kind: .security, reason: reason, address: address))
        live.changed(.problems, deviceID: deviceID)
    }

    func accepted(_ deviceID: String, _ outcome: IngestOutcome, atMs: Int64) async {
        // Health evidence for a staged rollout (one lock unless the device just installed an update).
        if rollouts.awaitsHealth(deviceID) {
            await rollouts.uploaded(deviceID: deviceID, decoded: outcome.packets.contains { !$0.resend && $0.isDecoded })
        }
        vitals.accepted(deviceID, atMs: atMs, packets: outcome.packets)
        for packet in outcome.packets where !packet.resend {
            guard let reason = packet.reason else { continue }
            log.record(DeviceEventLog.Event(atMs: atMs, deviceID: deviceID, kind: .decode, reason: reason.rawValue))
            live.changed(.problems, deviceID: deviceID)
        }
        live.changed(.sample, deviceID: deviceID)
    }
}
