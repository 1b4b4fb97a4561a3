import EcoWattProtocol
import EcoWattStorage

/// Remote configuration (spec §5): operators request validated changes, devices poll for them and acknowledge them.
struct ConfigService: Sendable {
    enum Failure: Error {
        /// No delivered configuration waits for an acknowledgement.
        case nothingToAcknowledge
        case nothingPending(String)
        case invalid(String)
        /// The requested settings would lose data on the device; `limits` gives the safe value of each.
        case dataLoss(String, limits: [(String, JSONValue)])
    }

    private let store: any ConfigStore
    let ingest: IngestService
    let clock: @Sendable () -> Int64

    init(store: any ConfigStore, ingest: IngestService, clock: @escaping @Sendable () -> Int64) {
        self.store = store
        self.ingest = ingest
        self.clock = clock
    }

    /// The pending `config_update` for the device's poll, or `nil`.
    func deliver(deviceID: String) async throws -> JSONValue? {
        try await store.deliverPending(deviceID: deviceID, nowMs: clock())
    }

    /// The device applied the configuration it was delivered.
    func acknowledge(deviceID: String, ack: JSONValue) async throws {
        // The device applied a change just now, whatever the server delivered: its next samples' times depend on it.
        try await ingest.configurationApplied(deviceID, atMs: clock())
        guard try await store.acknowledge(deviceID: deviceID, ack: ack, nowMs: clock()) else { throw Failure.nothingToAcknowledge }
    }

    /// Validates an operator's `config_update` against what the device will run once pending fields are applied, and
    /// stores the accepted fields as pending.
    func request(deviceID: String, update value: JSONValue) async throws -> (update: ConfigUpdate, state: ConfigState) {
        let current = try await store.configState(deviceID: deviceID)
        let update: ConfigUpdate
        do {
            update = try ConfigUpdate(
                update: value,
                running: JSONValue.merge(current.running, current.pending ?? .object([])),
                deviceID: deviceID
            )
        } catch  where !error.limits.isEmpty {
            throw Failure.dataLoss(error.reason, limits: error.limits)
        } catch {
            throw Failure.invalid(error.reason)
        }
        guard !update.accepted.isEmpty else { return (update, current) }
        return (update, try await store.addPending(deviceID: deviceID, update: .object(update.accepted), nowMs: clock()))
    }

    func state(deviceID: String) async throws -> ConfigState {
        try await store.configState(deviceID: deviceID)
    }

    /// History events, newest first, below the id `before` when given.
    func events(deviceID: String, before: Int64?, limit: Int) async throws -> [ConfigHistoryRow] {
        try await store.configHistory(deviceID: deviceID, before: before, limit: limit)
    }

    /// Drops the pending change before the device takes it.
    func withdraw(deviceID: String) async throws {
        guard try await store.withdrawPending(deviceID: deviceID, nowMs: clock()) else { throw Failure.nothingPending(deviceID) }
    }
}
