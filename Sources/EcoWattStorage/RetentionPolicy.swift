import EcoWattProtocol
import Foundation
import Synchronization

/// Where the store reports (after the commit) ids that got a registry row from a device request, and pending ids the
/// caps dropped, so that in-memory state and files follow.
public final class RegistryEvents: Sendable {
    public enum Event: Sendable {
        /// New registry rows (pending devices).
        case admitted([String])
        /// Pending devices dropped with everything they stored.
        case evicted([String])
    }

    private let listeners = Mutex<[@Sendable (Event) -> Void]>([])

    public init() {}

    /// Calls `listener` with every later event.
    public func observe(_ listener: @escaping @Sendable (Event) -> Void) {
        listeners.withLock { $0.append(listener) }
    }

    package func report(_ event: Event) {
        for listener in listeners.withLock({ $0 }) { listener(event) }
    }
}

/// A cap on one table: rows kept per device (per session for OTA events) and rows kept in all.
public struct RowCap: Sendable, Equatable {
    public var perDevice: Int
    public var total: Int

    public init(perDevice: Int, total: Int) {
        self.perDevice = perDevice
        self.total = total
    }
}

/// Caps on everything an unauthenticated device request can make the database keep (issue 13).
///
/// Device routes other than the upload carry no credential, so every row they add is bounded per device and in total,
/// the oldest dropped first and counted. Ids that never made a verified upload and that no operator created are
/// *pending*: they live in one bounded set, keep at most ``pendingRowsPerDevice`` rows per table, and when the set is
/// full the oldest pending id is dropped with everything it stored. Caps never drop a verified or operator-created
/// device, nor an active OTA session. Defaults are sized for a fleet of 1 000 000 devices.
public struct RetentionPolicy: Sendable, Equatable {
    /// Most pending device ids.
    public var maxPendingDevices = 100_000
    /// Rows a pending device keeps per table.
    public var pendingRowsPerDevice = 5
    /// Configuration events (requested, delivered, applied, boot reports).
    public var configHistory = RowCap(perDevice: 50, total: 2_000_000)
    /// Fault-recovery events (spec §6.2).
    public var faultEvents = RowCap(perDevice: 200, total: 5_000_000)
    /// Energy reports (spec §6.1; one per 300 s by default, so 300 is about a day).
    public var powerReports = RowCap(perDevice: 300, total: 5_000_000)
    /// OTA progress events: per session (a 1 MiB download reports about 60 times), and in all.
    public var otaEvents = RowCap(perDevice: 300, total: 2_000_000)
    /// Ended OTA sessions per device and in all (active sessions are never dropped).
    public var otaSessions = RowCap(perDevice: 20, total: 1_000_000)
    /// Once-per-boot messages from an unbound address, held until a verified upload confirms them.
    public var heldMessages = RowCap(perDevice: 6, total: 200_000)
    /// Days raw telemetry (and its per-minute rollups) is kept after it arrived (issue 17).
    public var rawTelemetryDays = 90
    /// Days per-hour rollups are kept.
    public var rollupDays = 1_825

    public init() {}

    package func cap(_ table: BoundedTable) -> RowCap {
        switch table {
        case .configHistory: configHistory
        case .faultEvents: faultEvents
        case .powerReports: powerReports
        case .otaEvents: otaEvents
        case .otaSessions: otaSessions
        case .heldMessages: heldMessages
        }
    }
}

/// Tables whose rows device requests add.
public enum BoundedTable: String, CaseIterable, Sendable {
    case configHistory = "config_history"
    case faultEvents = "fault_events"
    case powerReports = "power_reports"
    case otaEvents = "ota_events"
    case otaSessions = "ota_sessions"
    case heldMessages = "held_messages"
}

/// Rows kept and dropped per bounded table (and pending devices), for `/metrics` and the operator.
public struct RetentionCounts: Sendable, Equatable {
    /// Keyed by table name, plus `pending_devices`.
    public var rows: [String: Int] = [:]
    public var dropped: [String: Int] = [:]

    public init() {}
}
