import EcoWattProtocol
import Foundation

/// A device's configuration as the server knows it.
public struct ConfigState: Sendable, Equatable {
    /// What the device runs (boot report plus applied updates); `{}` when unknown.
    public var running: JSONValue
    /// Accepted fields waiting for the device; `nil` when nothing is pending.
    public var pending: JSONValue?
    public var pendingCreatedAtMs: Int64?
    public var pendingDeliveredAtMs: Int64?

    public init(
        running: JSONValue,
        pending: JSONValue?,
        pendingCreatedAtMs: Int64?,
        pendingDeliveredAtMs: Int64?
    ) {
        self.running = running
        self.pending = pending
        self.pendingCreatedAtMs = pendingCreatedAtMs
        self.pendingDeliveredAtMs = pendingDeliveredAtMs
    }
}

/// One entry of a device's configuration history.
public struct ConfigHistoryRow: Sendable, Equatable {
    /// Increases with every entry (the listing's cursor).
    public var id: Int64 = 0
    public var event: String
    public var config: JSONValue?
    public var detail: String?
    public var createdAtMs: Int64

    public init(
        event: String,
        config: JSONValue?,
        detail: String?,
        createdAtMs: Int64
    ) {
        self.event = event
        self.config = config
        self.detail = detail
        self.createdAtMs = createdAtMs
    }
}

/// Remote configuration (spec §5).
public protocol ConfigStore: Sendable {
    func configState(deviceID: String) async throws -> ConfigState
    /// Merges accepted fields into the device's pending configuration.
    func addPending(deviceID: String, update: JSONValue, nowMs: Int64) async throws -> ConfigState
    /// The pending `config_update` object to deliver, or `nil`. A pending configuration that no longer changes the
    /// device (compared with its running configuration) is delivered once and cleared.
    func deliverPending(deviceID: String, nowMs: Int64) async throws -> JSONValue?
    /// The device applied the pending configuration it was delivered: it becomes part of the running one. `false` if
    /// none was pending, or it was not delivered yet (an acknowledgement must match what was sent).
    func acknowledge(deviceID: String, ack: JSONValue, nowMs: Int64) async throws -> Bool
    /// The boot report: the device's actual running configuration.
    func recordRunning(deviceID: String, report: JSONValue, nowMs: Int64) async throws
    /// The device's configuration events, newest first, those with an id below `before` when it is given.
    func configHistory(deviceID: String, before: Int64?, limit: Int) async throws -> [ConfigHistoryRow]
    /// Drops the pending configuration (recorded as `withdrawn`); `false` when none was pending.
    func withdrawPending(deviceID: String, nowMs: Int64) async throws -> Bool
}

extension ConfigStore {
    public func configHistory(deviceID: String, limit: Int) async throws -> [ConfigHistoryRow] {
        try await configHistory(deviceID: deviceID, before: nil, limit: limit)
    }
}
