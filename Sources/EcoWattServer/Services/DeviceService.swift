import EcoWattStorage
import Foundation

/// The device registry as the routes use it: operators list, edit and delete devices (each with its live status);
/// device routes make sure an id has a row before they store something for it.
struct DeviceService: Sendable {
    enum Failure: Error, Equatable {
        case unknownDevice(String)
        /// An operator request names a device the server has never seen, without `create`.
        case notProvisioned(String)
        case exists(String)
    }

    enum Status: String, Sendable, CaseIterable {
        case online, offline
        /// An OTA download is in progress.
        case updating
    }

    /// A registry row with what the server knows beyond it.
    struct Listing: Sendable {
        var row: DeviceRow
        /// The latest of the stored time and requests not yet written.
        var lastSeenMs: Int64
        var status: Status
        var online: Bool { status != .offline }
    }

    /// What a listing is narrowed to: the stored fields, and the live state.
    struct Query: Sendable {
        var stored = DeviceFilter()
        var status: Status?
        var lastSeenAfterMs: Int64?
        var lastSeenBeforeMs: Int64?
    }

    /// Rows read per store page while filters on live state skip devices; a listing page reads at most
    /// ``maxScannedPerPage`` rows and then answers what it found with a cursor.
    static let scanBatch = 500
    static let maxScannedPerPage = 20_000

    private let store: any DeviceRegistryStore
    let activity: DeviceActivity
    let binding: DeviceBinding
    let ingest: IngestService
    let offlineAfterMs: Int64
    /// Whether a device has an OTA download in progress.
    let updating: @Sendable (String) -> Bool
    /// Told of deleted devices (what is kept about them in memory elsewhere goes too).
    let deleted: @Sendable ([String]) -> Void
    let clock: @Sendable () -> Int64

    init(
        store: any DeviceRegistryStore,
        activity: DeviceActivity,
        binding: DeviceBinding,
        ingest: IngestService,
        offlineAfterMs: Int64,
        updating: @escaping @Sendable (String) -> Bool = { _ in false },
        deleted: @escaping @Sendable ([String]) -> Void = { _ in },
        clock: @escaping @Sendable () -> Int64
    ) {
        self.deleted = deleted
        self.store = store
        self.activity = activity
        self.binding = binding
        self.ingest = ingest
        self.offlineAfterMs = offlineAfterMs
        self.updating = updating
        self.clock = clock
    }

    /// Devices by id after `after`, up to `limit` matching `query`; `next` is where the following page starts (`nil`
    /// at the end). Live filters (status, last seen) are applied to store pages, so a page may hold fewer devices.
    func devices(after: String?, limit: Int, query: Query = Query()) async throws -> (items: [Listing], next: String?) {
        var items: [Listing] = []
        var cursor = after
        var scanned = 0
        while items.count < limit, scanned < Self.maxScannedPerPage {
            let batch = min(Self.scanBatch, Self.maxScannedPerPage - scanned)
            let rows = try await store.devices(after: cursor, limit: batch, filter: query.stored)
            for row in rows {
                scanned += 1
                cursor = row.deviceID
                let entry = listing(row)
                guard query.matches(entry) else { continue }
                items.append(entry)
                // There may be more: the next page starts after this device (and may be empty).
                if items.count == limit { return (items, row.deviceID) }
            }
            if rows.count < batch { return (items, nil) }
        }
        return (items, cursor)
    }

    /// Creates a device for an operator; refuses an id that is known.
    /// Fleet counts from memory: devices known, heard from within `device_offline_after_seconds`, downloading.
    func summary(updating: Int) -> (devices: Int, online: Int, updating: Int) {
        let known = activity.counts.known
        return (known, min(known, activity.activeCount(sinceMs: clock() - offlineAfterMs)), updating)
    }

    func create(_ deviceID: String, fields: DeviceFields) async throws -> Listing {
        guard try await store.createDevice(deviceID, fields: fields, nowMs: clock()) else { throw Failure.exists(deviceID) }
        activity.admit(deviceID, at: clock())
        return try await device(deviceID)
    }

    /// Refuses an id the server has never seen unless the operator asked to `create` it (pre-provisioning): a typo
    /// must not leave commands or configuration waiting for a device that does not exist.
    func requireKnown(_ deviceID: String, create: Bool) async throws {
        if create { return }
        if try await store.device(deviceID) != nil { return }
        throw Failure.notProvisioned(deviceID)
    }

    func device(_ deviceID: String) async throws -> Listing {
        guard let row = try await store.device(deviceID) else { throw Failure.unknownDevice(deviceID) }
        return listing(row)
    }

    /// Sets the given fields of a known device (an operator's edit adopts a pending one).
    func update(_ deviceID: String, fields: DeviceFields) async throws -> Listing {
        guard let row = try await store.updateDevice(deviceID, fields: fields) else { throw Failure.unknownDevice(deviceID) }
        return listing(row)
    }

    /// Forgets a device: its registry row, nonce and decoder state, pending commands, binding and what memory holds of
    /// it. Telemetry stays.
    func delete(_ deviceID: String) async throws {
        guard try await store.deleteDevice(deviceID, nowMs: clock()) else { throw Failure.unknownDevice(deviceID) }
        activity.forget([deviceID])
        binding.forget([deviceID])
        deleted([deviceID])
        ingest.forget(deviceID)
    }

    /// Gives an id a registry row before a device route stores something for it (unknown ids become pending).
    func admit(_ deviceID: String) async throws {
        try await store.admit(deviceID: deviceID, nowMs: clock())
    }

    func retentionCounts() async throws -> RetentionCounts {
        try await store.retentionCounts()
    }

    private func listing(_ row: DeviceRow) -> Listing {
        let lastSeen = activity.lastSeen(row.deviceID, stored: row.lastSeenMs)
        let status: Status = updating(row.deviceID) ? .updating : clock() - lastSeen <= offlineAfterMs ? .online : .offline
        return Listing(row: row, lastSeenMs: lastSeen, status: status)
    }
}

extension DeviceService.Query {
    func matches(_ listing: DeviceService.Listing) -> Bool {
        if let status, listing.status != status { return false }
        if let after = lastSeenAfterMs, listing.lastSeenMs <= after { return false }
        if let before = lastSeenBeforeMs, listing.lastSeenMs >= before { return false }
        return true
    }
}
