import EcoWattProtocol
import Foundation

/// The in-memory tables behind ``InMemoryStore``'s registry, commands, configuration, reports and OTA, with the same
/// bookkeeping as the SQLite store: pending devices bounded and evicted oldest first, rows bounded per device and in
/// all (a tenth of the cap trimmed at once), counts of dropped rows.
struct RegistryTables {
    var devices: [String: DeviceRow] = [:]
    var droppedRows: [String: Int] = [:]
    var nextID: Int64 = 1
    /// In id (queue) order.
    var commands: [CommandRow] = []
    /// Where each dispatched command went (a result must come from there).
    var dispatchedTo: [String: String] = [:]
    var configs: [String: ConfigState] = [:]
    var configHistory: [(id: Int64, deviceID: String, row: ConfigHistoryRow)] = []
    var powerReports: [PowerReport] = []
    var faultEvents: [FaultEvent] = []
    var deployments: [OTADeployment] = []
    /// In insertion order (SQLite's rowid).
    var sessions: [OTASession] = []
    var otaEvents: [(id: Int64, event: OTAEvent)] = []

    mutating func takeID() -> Int64 {
        defer { nextID += 1 }
        return nextID
    }

    static let pendingDevices = "pending_devices"

    var pendingCount: Int { devices.values.count { $0.admission == "pending" } }

    /// A verified upload: the device's row, created or updated as the SQLite upsert does.
    mutating func uploaded(_ record: IngestRecord) {
        let now = record.receivedAtMs
        var row =
            devices[record.deviceID]
            ?? DeviceRow(
                deviceID: record.deviceID,
                deviceName: nil,
                location: nil,
                description: nil,
                firmwareVersion: nil,
                registeredAtMs: nil,
                firstSeenMs: now,
                lastSeenMs: now,
                uploadCount: 0,
                admission: "verified",
                boundAddress: nil,
                boundAtMs: nil,
                nonceJumpsRefused: 0,
                lastRefusedNonce: nil
            )
        row.lastSeenMs = now
        row.uploadCount += 1
        if row.admission != "operator" { row.admission = "verified" }
        if let address = record.clientAddress {
            row.boundAddress = address
            row.boundAtMs = now
        }
        devices[record.deviceID] = row
    }

    /// Makes sure `deviceID` has a registry row; an unknown id becomes pending, evicting the oldest pending ids when
    /// there are too many.
    mutating func admit(
        _ deviceID: String,
        nowMs: Int64,
        policy: RetentionPolicy,
        held: inout [HeldMessage]
    ) -> (pending: Bool, created: Bool, evicted: [String]) {
        if let row = devices[deviceID] { return (row.admission == "pending", false, []) }
        devices[deviceID] = Self.newRow(deviceID, nowMs: nowMs, admission: "pending")
        let pending = devices.values.filter { $0.admission == "pending" && $0.deviceID != deviceID }
        guard pending.count + 1 > policy.maxPendingDevices else { return (true, true, []) }
        let evicted = pending.sorted { ($0.firstSeenMs, $0.deviceID) < ($1.firstSeenMs, $1.deviceID) }
            .prefix(pending.count + 1 - policy.maxPendingDevices).map(\.deviceID)
        for id in evicted { evict(id, held: &held) }
        return (true, true, Array(evicted))
    }

    static func newRow(_ deviceID: String, nowMs: Int64, admission: String) -> DeviceRow {
        DeviceRow(
            deviceID: deviceID,
            deviceName: nil,
            location: nil,
            description: nil,
            firmwareVersion: nil,
            registeredAtMs: nil,
            firstSeenMs: nowMs,
            lastSeenMs: nowMs,
            uploadCount: 0,
            admission: admission,
            boundAddress: nil,
            boundAtMs: nil,
            nonceJumpsRefused: 0,
            lastRefusedNonce: nil
        )
    }

    /// An operator created or targeted the device: it is no longer pending and caps never drop it.
    mutating func adopt(_ deviceID: String, nowMs: Int64) {
        guard let row = devices[deviceID] else {
            devices[deviceID] = Self.newRow(deviceID, nowMs: nowMs, admission: "operator")
            return
        }
        if row.admission == "pending" { devices[deviceID]?.admission = "operator" }
    }

    /// Drops a pending device and everything it stored.
    mutating func evict(_ deviceID: String, held: inout [HeldMessage]) {
        dropped(.configHistory, Self.remove(&configHistory) { $0.deviceID == deviceID })
        dropped(.faultEvents, Self.remove(&faultEvents) { $0.deviceID == deviceID })
        dropped(.powerReports, Self.remove(&powerReports) { $0.deviceID == deviceID })
        dropped(.otaEvents, Self.remove(&otaEvents) { $0.event.deviceID == deviceID })
        dropped(.otaSessions, Self.remove(&sessions) { $0.deviceID == deviceID })
        dropped(.heldMessages, Self.remove(&held) { $0.deviceID == deviceID })
        configs[deviceID] = nil
        if devices[deviceID]?.admission == "pending" {
            devices[deviceID] = nil
            droppedRows[Self.pendingDevices, default: 0] += 1
        }
    }

    /// Counts rows a cap dropped.
    mutating func dropped(_ table: BoundedTable, _ count: Int) {
        if count > 0 { droppedRows[table.rawValue, default: 0] += count }
    }

    /// Removes the rows matching `doomed`; returns how many.
    static func remove<Row>(_ rows: inout [Row], where doomed: (Row) -> Bool) -> Int {
        let before = rows.count
        rows.removeAll(where: doomed)
        return before - rows.count
    }

    /// Keeps the newest `keep` of the rows matching `mine` (rows are oldest first); returns how many it dropped.
    static func trim<Row>(_ rows: inout [Row], keep: Int, where mine: (Row) -> Bool) -> Int {
        let indices = rows.indices.filter { mine(rows[$0]) }
        guard indices.count > keep else { return 0 }
        let doomed = Set(indices.prefix(indices.count - keep))
        rows = rows.indices.filter { !doomed.contains($0) }.map { rows[$0] }
        return doomed.count
    }

    /// Past `total`, the oldest rows and a tenth of the cap more (as the SQLite ledger trims, so that a table at its
    /// cap is not trimmed on every insert); returns how many it dropped.
    static func trimTotal<Row>(_ rows: inout [Row], total: Int) -> Int {
        guard rows.count > total else { return 0 }
        let excess = min(rows.count, rows.count - total + max(1, total / 10))
        rows.removeFirst(excess)
        return excess
    }

    /// Rows kept per device for `table` (fewer for a pending device).
    static func perDevice(_ table: BoundedTable, pending: Bool, policy: RetentionPolicy) -> Int {
        let cap = policy.cap(table).perDevice
        return pending ? min(cap, policy.pendingRowsPerDevice) : cap
    }

    func counts(held: Int) -> RetentionCounts {
        var counts = RetentionCounts()
        counts.rows = [
            BoundedTable.configHistory.rawValue: configHistory.count, BoundedTable.faultEvents.rawValue: faultEvents.count,
            BoundedTable.powerReports.rawValue: powerReports.count, BoundedTable.otaEvents.rawValue: otaEvents.count,
            BoundedTable.otaSessions.rawValue: sessions.count, BoundedTable.heldMessages.rawValue: held,
            Self.pendingDevices: pendingCount,
        ]
        for name in counts.rows.keys { counts.dropped[name] = droppedRows[name] ?? 0 }
        return counts
    }
}

extension InMemoryStore: DeviceRegistryStore {
    /// Runs `body` after admitting `deviceID` (see ``admit(deviceID:nowMs:)``); reports admissions and evictions after.
    func admitting<T>(_ deviceID: String, nowMs: Int64, _ body: (inout State, _ pending: Bool) throws -> T) rethrows -> T {
        let policy = retention
        let (value, created, evicted) = try state.withLock { state in
            let admission = state.registry.admit(deviceID, nowMs: nowMs, policy: policy, held: &state.held)
            return (try body(&state, admission.pending), admission.created, admission.evicted)
        }
        if !evicted.isEmpty { events.report(.evicted(evicted)) }
        if created { events.report(.admitted([deviceID])) }
        return value
    }

    public func admit(deviceID: String, nowMs: Int64) async throws -> Bool {
        admitting(deviceID, nowMs: nowMs) { _, pending in pending }
    }

    public func knownDevices() async throws -> [String: Int64] {
        state.withLock { $0.registry.devices.mapValues(\.lastSeenMs) }
    }

    public func retentionCounts() async throws -> RetentionCounts {
        state.withLock { $0.registry.counts(held: $0.held.count) }
    }

    public func register(deviceID: String, fields: DeviceFields, nowMs: Int64) async throws -> Bool {
        admitting(deviceID, nowMs: nowMs) { state, _ in
            var row = state.registry.devices[deviceID]!
            let new = row.registeredAtMs == nil
            row.lastSeenMs = max(row.lastSeenMs, nowMs)
            row.apply(fields)
            row.registeredAtMs = row.registeredAtMs ?? nowMs
            state.registry.devices[deviceID] = row
            return new
        }
    }

    public func device(_ deviceID: String) async throws -> DeviceRow? {
        state.withLock { $0.registry.devices[deviceID] }
    }

    public func devices(after: String?, limit: Int, filter: DeviceFilter) async throws -> [DeviceRow] {
        state.withLock { state in
            let matching = state.registry.devices.values.filter { row in
                row.deviceID > (after ?? "") && (filter.firmwareVersion.map { row.firmwareVersion == $0 } ?? true)
                    && (filter.idPrefix.map { row.deviceID.utf8.starts(with: $0.utf8) } ?? true)
                    && (filter.admission.map { row.admission == $0 } ?? true)
            }
            // Byte order, as SQLite compares text.
            return Array(matching.sorted { $0.deviceID.utf8.lexicographicallyPrecedes($1.deviceID.utf8) }.prefix(max(0, limit)))
        }
    }

    public func createDevice(_ deviceID: String, fields: DeviceFields, nowMs: Int64) async throws -> Bool {
        state.withLock { state in
            guard state.registry.devices[deviceID] == nil else { return false }
            var row = RegistryTables.newRow(deviceID, nowMs: nowMs, admission: "operator")
            row.apply(fields)
            state.registry.devices[deviceID] = row
            return true
        }
    }

    public func updateDevice(_ deviceID: String, fields: DeviceFields) async throws -> DeviceRow? {
        state.withLock { state in
            guard state.registry.devices[deviceID] != nil else { return nil }
            state.registry.adopt(deviceID, nowMs: 0)
            state.registry.devices[deviceID]?.apply(fields)
            return state.registry.devices[deviceID]
        }
    }

    public func deleteDevice(_ deviceID: String, nowMs: Int64) async throws -> Bool {
        // The nonce stays in the telemetry tables (the SQLite store keeps it in a tombstone): old uploads stay replays.
        state.withLock { state in
            let existed = state.registry.devices.removeValue(forKey: deviceID) != nil
            for index in state.registry.commands.indices
            where state.registry.commands[index].deviceID == deviceID && state.registry.commands[index].status == .pending {
                state.registry.commands[index].status = .cancelled
                state.registry.commands[index].finishedAtMs = nowMs
            }
            return existed
        }
    }

    public func recordLastSeen(_ lastSeen: [String: Int64]) async throws {
        state.withLock { state in
            // Update only: a poll must not create registry rows.
            for (device, seen) in lastSeen {
                guard let row = state.registry.devices[device] else { continue }
                state.registry.devices[device]?.lastSeenMs = max(row.lastSeenMs, seen)
            }
        }
    }
}

extension DeviceRow {
    /// Sets the fields that are given.
    mutating func apply(_ fields: DeviceFields) {
        deviceName = fields.deviceName ?? deviceName
        location = fields.location ?? location
        description = fields.description ?? description
        firmwareVersion = fields.firmwareVersion ?? firmwareVersion
    }
}
