import EcoWattProtocol
import Foundation
import Synchronization

/// The device registry as the server's services see it.
public protocol DeviceRegistryStore: Sendable {
    /// Registers or updates a device (boot registration). Returns `true` when the device was new.
    func register(deviceID: String, fields: DeviceFields, nowMs: Int64) async throws -> Bool
    func device(_ deviceID: String) async throws -> DeviceRow?
    /// Devices by id, after `after` when it is given, matching `filter`.
    func devices(after: String?, limit: Int, filter: DeviceFilter) async throws -> [DeviceRow]
    /// Creates a device for an operator (pre-provisioning); `false` when the id already has a row (nothing changes).
    func createDevice(_ deviceID: String, fields: DeviceFields, nowMs: Int64) async throws -> Bool
    /// Updates operator-editable fields; `nil` when the device is unknown.
    func updateDevice(_ deviceID: String, fields: DeviceFields) async throws -> DeviceRow?
    /// Forgets a device: registry row (with its nonce and decoder state) and its pending commands. Telemetry stays.
    func deleteDevice(_ deviceID: String, nowMs: Int64) async throws -> Bool
    /// Records when known devices (registered or uploaded) were last heard from (batched by ``DeviceActivity``).
    func recordLastSeen(_ lastSeen: [String: Int64]) async throws
    /// Makes sure an id that a device route is about to store something for has a registry row: unknown ids become
    /// pending (bounded, see ``RetentionPolicy``). Returns whether the device is pending.
    @discardableResult
    func admit(deviceID: String, nowMs: Int64) async throws -> Bool
    /// Every known device id with its last-seen time (read once at start).
    func knownDevices() async throws -> [String: Int64]
    /// Rows kept and dropped per bounded table.
    func retentionCounts() async throws -> RetentionCounts
}

/// Durable operator command queues (spec §4).
public protocol CommandStore: Sendable {
    /// Queues a command. With an idempotency key already used for this device, returns the existing command and
    /// `created: false`.
    func queue(_ command: CommandRequest, deviceID: String, nowMs: Int64, maxPending: Int) async throws -> (command: CommandRow, created: Bool)
    /// Atomically takes the device's oldest deliverable pending command and marks it dispatched to `address` (expired
    /// ones are marked expired on the way). `nil` when there is none.
    func dispatchNext(deviceID: String, address: String, nowMs: Int64) async throws -> CommandRow?
    /// Devices that have pending commands (read once at start, see ``CommandService``).
    func devicesWithPendingCommands() async throws -> [String]
    /// Records a device's result for one of its dispatched (or timed-out) commands, reported from the address it was
    /// dispatched to.
    func recordResult(_ result: CommandResult, deviceID: String, address: String, nowMs: Int64) async throws -> CommandRow
    func command(_ commandID: String) async throws -> CommandRow?
    /// Commands of a device (of every device when `deviceID` is `nil`), newest first, of `status` when it is given,
    /// with a ``CommandRow/sequence`` below `before` when it is given.
    func commands(deviceID: String?, status: CommandStatus?, before: Int64?, limit: Int) async throws -> [CommandRow]
    /// Cancels a pending command.
    func cancelCommand(_ commandID: String, nowMs: Int64) async throws -> CommandRow
    /// Marks dispatched commands without a result after `resultTimeoutMs` as timed out, and pending ones past their
    /// expiry as expired; returns the device of each (one entry per command).
    func sweepCommands(nowMs: Int64, resultTimeoutMs: Int64) async throws -> (timedOut: [String], expired: [String])
    /// Number of commands in each state.
    func commandCounts() async throws -> [CommandStatus: Int]
}

/// What a device listing is narrowed to (the stored fields; live status is the service's).
public struct DeviceFilter: Sendable, Equatable {
    public var firmwareVersion: String?
    public var idPrefix: String?
    /// `pending`, `verified` or `operator`.
    public var admission: String?

    public init(firmwareVersion: String? = nil, idPrefix: String? = nil, admission: String? = nil) {
        self.firmwareVersion = firmwareVersion
        self.idPrefix = idPrefix
        self.admission = admission
    }
}

extension DeviceRegistryStore {
    public func devices(limit: Int) async throws -> [DeviceRow] {
        try await devices(after: nil, limit: limit, filter: DeviceFilter())
    }

    /// Every device matching `filter`, read in pages of 1 000.
    public func allDevices(filter: DeviceFilter) async throws -> [DeviceRow] {
        var rows: [DeviceRow] = []
        var after: String?
        while true {
            let page = try await devices(after: after, limit: 1000, filter: filter)
            rows += page
            guard page.count == 1000, let last = page.last else { return rows }
            after = last.deviceID
        }
    }
}

extension CommandStore {
    /// Commands of a device, newest first.
    public func commandHistory(deviceID: String, limit: Int) async throws -> [CommandRow] {
        try await commands(deviceID: deviceID, status: nil, before: nil, limit: limit)
    }
}
