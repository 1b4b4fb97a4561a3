import EcoWattStorage

/// Device reports: energy (spec §6.1) and fault recovery (spec §6.2), stored within their caps.
struct ReportService: Sendable {
    private let store: any ReportStore

    init(store: any ReportStore) {
        self.store = store
    }

    func record(_ report: PowerReport) async throws {
        try await store.addPowerReport(report)
    }

    /// Reports received at or after `sinceMs`, newest first.
    func powerReports(deviceID: String, sinceMs: Int64, before: Int64? = nil, limit: Int) async throws -> [PowerReport] {
        try await store.powerReports(deviceID: deviceID, sinceMs: sinceMs, before: before, limit: limit)
    }

    /// Stores an event; returns its id.
    func record(_ event: FaultEvent) async throws -> Int64 {
        try await store.addFaultEvent(event)
    }

    /// The newest events and the counts over all of them.
    func faultEvents(deviceID: String, before: Int64? = nil, limit: Int) async throws -> (events: [FaultEvent], total: Int, successful: Int) {
        try await store.faultEvents(deviceID: deviceID, before: before, limit: limit)
    }
}
