import EcoWattProtocol
import EcoWattStorage

/// Diagnostics JSONL (spec §9.3): each posted object is stored as one line with `device_id` (forced to the URL id)
/// and the server's `received_at`, in the backend's ``DiagnosticsStore`` (files on SQLite, rows in PostgreSQL), which
/// bounds them per device and in all. Entries are read back from the store, so they survive restarts and, on
/// PostgreSQL, every instance sees them.
public final class DiagnosticsService: Sendable {
    let store: any DiagnosticsStore

    /// Largest accepted diagnostics object.
    public static let maxBodyBytes = 16 * 1024

    public init(store: any DiagnosticsStore) {
        self.store = store
    }

    /// Devices with diagnostics, sorted.
    public func devices() async throws -> [String] {
        try await store.diagnosticsDevices()
    }

    /// Bytes stored and what was dropped to stay within the budget.
    public func usage() async throws -> DiagnosticsUsage {
        try await store.diagnosticsUsage()
    }

    /// Appends `object` with `device_id` (forced to the URL id) and the server's `received_at`.
    public func append(deviceID: String, object: JSONValue, receivedAt: String) async throws {
        guard case .object(let members) = object else { throw DiagnosticsStoreError.unwritable("the body must be a JSON object") }
        let line = Array(
            (JSONValue.object(
                members.filter { $0.0 != "device_id" && $0.0 != "received_at" }
                    + [("device_id", .string(deviceID)), ("received_at", .string(receivedAt))]
            ).serialized + "\n").utf8
        )
        try await store.appendDiagnostics(deviceID: deviceID, line: line, receivedAt: receivedAt)
    }

    /// Pending devices the registry dropped: their diagnostics go too.
    public func evicted(_ deviceIDs: [String]) async {
        for deviceID in deviceIDs where SafeIdentifier.isValid(deviceID) {
            _ = try? await store.deleteDiagnostics(deviceID: deviceID)
        }
    }

    /// The newest `limit` entries of a device, newest first. Lines that are not JSON (there should be none) are
    /// skipped.
    public func entries(deviceID: String, limit: Int) async throws -> [JSONValue] {
        try await store.diagnostics(deviceID: deviceID, limit: limit).compactMap { try? JSONParser.parse($0) }
    }

    /// Per device: files, bytes and entries stored, and the newest entry's `received_at`.
    public func summary(deviceID: String) async throws -> DiagnosticsSummary {
        try await store.diagnosticsSummary(deviceID: deviceID)
    }

    /// Removes every entry of a device; returns how many files (PostgreSQL: 1 when it had entries).
    public func delete(deviceID: String) async throws -> Int {
        try await store.deleteDiagnostics(deviceID: deviceID)
    }
}
