import EcoWattStorage
import Foundation

/// The device registry as the routes use it: operators list, edit and delete devices (each with its live status);
/// device routes make sure an id has a row before they store something for it.
struct DeviceService: Sendable {
    enum Failure: Error, Equatable {
        case unknownDevice(String)
    }

    /// A registry row with what the server knows beyond it.
    struct Listing: Sendable {
        var row: DeviceRow
        /// The latest of the stored time and requests not yet written.
        var lastSeenMs: Int64
        var online: Bool
    }

    private let store: any DeviceRegistryStore
    let activity: DeviceActivity
    let binding: DeviceBinding
    let ingest: IngestService
    let offlineAfterMs: Int64
    let clock: @Sendable () -> Int64

    init(
        store: any DeviceRegistryStore,
        activity: DeviceActivity,
        binding: DeviceBinding,
        ingest: IngestService,
        offlineAfterMs: Int64,
        clock: @escaping @Sendable () -> Int64
    ) {
        self.store = store
        self.activity = activity
        self.binding = binding
        self.ingest = ingest
        self.offlineAfterMs = offlineAfterMs
        self.clock = clock
    }

    func devices(limit: Int) async throws -> [Listing] {
        try await store.devices(limit: limit).map(listing)
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
        await ingest.forget(deviceID)
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
        return Listing(row: row, lastSeenMs: lastSeen, online: clock() - lastSeen <= offlineAfterMs)
    }
}
