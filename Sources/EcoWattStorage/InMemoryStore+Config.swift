import EcoWattProtocol
import Foundation

extension InMemoryStore: ConfigStore {
    public func configState(deviceID: String) async throws -> ConfigState {
        state.withLock { $0.registry.config(deviceID) }
    }

    public func addPending(deviceID: String, update: JSONValue, nowMs: Int64) async throws -> ConfigState {
        let policy = retention
        return state.withLock { state in
            state.registry.adopt(deviceID, nowMs: nowMs)
            var config = state.registry.config(deviceID)
            config.pending = JSONValue.merge(config.pending ?? .object([]), update)
            config.pendingCreatedAtMs = nowMs
            config.pendingDeliveredAtMs = nil
            state.registry.configs[deviceID] = config
            state.registry.history(deviceID, "requested", update, nil, nowMs, pending: false, policy: policy)
            return config
        }
    }

    public func deliverPending(deviceID: String, nowMs: Int64) async throws -> JSONValue? {
        let policy = retention
        return state.withLock { state in
            var config = state.registry.config(deviceID)
            guard let pending = config.pending, case .object(let fields) = pending else { return nil }
            let changes = fields.contains { key, value in !ConfigUpdate.matches(value, config.running[key], key: key) }
            if !changes {
                // The device would change nothing and so sends no acknowledgement (spec §5.3): clear it now.
                state.registry.endPending(
                    deviceID,
                    "cleared_noop",
                    detail: "delivered; changes nothing on the device",
                    nowMs: nowMs,
                    policy: policy
                )
            } else if config.pendingDeliveredAtMs == nil {
                config.pendingDeliveredAtMs = nowMs
                state.registry.configs[deviceID] = config
                state.registry.history(deviceID, "delivered", pending, nil, nowMs, pending: false, policy: policy)
            }
            return pending
        }
    }

    public func acknowledge(deviceID: String, ack: JSONValue, nowMs: Int64) async throws -> Bool {
        let policy = retention
        return state.withLock { state in
            let config = state.registry.config(deviceID)
            guard let pending = config.pending, config.pendingDeliveredAtMs != nil else { return false }
            state.registry.configs[deviceID]?.running = JSONValue.merge(config.running, pending)
            state.registry.endPending(deviceID, "applied", detail: ack.serialized, nowMs: nowMs, policy: policy)
            return true
        }
    }

    public func recordRunning(deviceID: String, report: JSONValue, nowMs: Int64) async throws {
        let policy = retention
        admitting(deviceID, nowMs: nowMs) { state, pending in
            var config = state.registry.config(deviceID)
            config.running = report
            state.registry.configs[deviceID] = config
            state.registry.history(deviceID, "boot_report", report, nil, nowMs, pending: pending, policy: policy)
        }
    }

    public func configHistory(deviceID: String, before: Int64?, limit: Int) async throws -> [ConfigHistoryRow] {
        state.withLock { state in
            Array(
                state.registry.configHistory.reversed().filter { $0.deviceID == deviceID && $0.id < before ?? .max }.prefix(max(0, limit))
                    .map { entry in
                        var row = entry.row
                        row.id = entry.id
                        return row
                    }
            )
        }
    }

    public func withdrawPending(deviceID: String, nowMs: Int64) async throws -> Bool {
        let policy = retention
        return state.withLock { state in
            guard state.registry.config(deviceID).pending != nil else { return false }
            state.registry.endPending(deviceID, "withdrawn", detail: nil, nowMs: nowMs, policy: policy)
            return true
        }
    }
}

extension InMemoryStore: ReportStore {
    public func addPowerReport(_ report: PowerReport) async throws {
        let policy = retention
        admitting(report.deviceID, nowMs: report.receivedAtMs) { state, pending in
            var stored = report
            stored.id = state.registry.takeID()
            state.registry.powerReports.append(stored)
            state.registry.bound(.powerReports, \.powerReports, deviceID: report.deviceID, pending: pending, policy: policy) { $0.deviceID }
        }
    }

    public func powerReports(deviceID: String, sinceMs: Int64, before: Int64?, limit: Int) async throws -> [PowerReport] {
        state.withLock { state in
            Array(
                state.registry.powerReports.reversed()
                    .filter { $0.deviceID == deviceID && $0.receivedAtMs >= sinceMs && $0.id < before ?? .max }
                    .prefix(max(0, limit))
            )
        }
    }

    public func addFaultEvent(_ event: FaultEvent) async throws -> Int64 {
        let policy = retention
        return admitting(event.deviceID, nowMs: event.receivedAtMs) { state, pending in
            var stored = event
            stored.id = state.registry.takeID()
            state.registry.faultEvents.append(stored)
            state.registry.bound(.faultEvents, \.faultEvents, deviceID: event.deviceID, pending: pending, policy: policy) { $0.deviceID }
            return stored.id
        }
    }

    public func faultEvents(deviceID: String, before: Int64?, limit: Int) async throws -> (events: [FaultEvent], total: Int, successful: Int) {
        state.withLock { state in
            let mine = state.registry.faultEvents.filter { $0.deviceID == deviceID }
            let page = mine.reversed().filter { $0.id < before ?? .max }.prefix(max(0, limit))
            return (Array(page), mine.count, mine.count(where: \.success))
        }
    }
}

extension RegistryTables {
    /// The pending configuration is done with (`event`: applied, cleared as a no-op, withdrawn), recorded with it.
    mutating func endPending(_ deviceID: String, _ event: String, detail: String?, nowMs: Int64, policy: RetentionPolicy) {
        var config = config(deviceID)
        let pending = config.pending
        config.pending = nil
        config.pendingDeliveredAtMs = nil
        configs[deviceID] = config
        history(deviceID, event, pending, detail, nowMs, pending: false, policy: policy)
    }

    func config(_ deviceID: String) -> ConfigState {
        configs[deviceID] ?? ConfigState(running: .object([]), pending: nil, pendingCreatedAtMs: nil, pendingDeliveredAtMs: nil)
    }

    /// Appends a configuration history event (bounded per device and in total).
    mutating func history(
        _ deviceID: String,
        _ event: String,
        _ config: JSONValue?,
        _ detail: String?,
        _ nowMs: Int64,
        pending: Bool,
        policy: RetentionPolicy
    ) {
        configHistory.append((takeID(), deviceID, ConfigHistoryRow(event: event, config: config, detail: detail, createdAtMs: nowMs)))
        bound(.configHistory, \.configHistory, deviceID: deviceID, pending: pending, policy: policy) { $0.deviceID }
    }

    /// After a row was appended to `table`: the device's oldest rows beyond its cap, then the table's oldest beyond
    /// its total.
    mutating func bound<Row>(
        _ table: BoundedTable,
        _ rows: WritableKeyPath<RegistryTables, [Row]>,
        deviceID: String,
        pending: Bool,
        policy: RetentionPolicy,
        device: (Row) -> String
    ) {
        let keep = Self.perDevice(table, pending: pending, policy: policy)
        let dropped = Self.trim(&self[keyPath: rows], keep: keep) { device($0) == deviceID }
        self.dropped(table, dropped + Self.trimTotal(&self[keyPath: rows], total: policy.cap(table).total))
    }
}
