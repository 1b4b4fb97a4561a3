import EcoWattStorage
import Foundation

/// Operator telemetry queries: the latest sample, history at the resolution that fits the window, stored packets.
struct TelemetryQueries: Sendable {
    enum Failure: Error, Equatable {
        case noData(String)
        case reversedWindow
        case unknownResolution(String)
    }

    /// A window of history: raw samples, or rollups of `resolution`.
    struct History: Sendable {
        var resolution: RollupResolution?
        var samples: [SampleRow] = []
        var rollups: [TelemetryRollup] = []
    }

    /// Windows up to this long return raw samples unless asked otherwise (the default window is one day).
    static let rawWindowMs: Int64 = 86_400_000
    /// Windows up to this long return per-minute rollups, longer ones per-hour rollups.
    static let minuteWindowMs: Int64 = 14 * 86_400_000

    private let store: any TelemetryStore

    init(store: any TelemetryStore) {
        self.store = store
    }

    func latest(_ deviceID: String) async throws -> SampleRow {
        guard let sample = try await store.latestSample(deviceID: deviceID) else { throw Failure.noData(deviceID) }
        return sample
    }

    /// Samples or rollups of `[fromMs, toMs]`, oldest first; `resolution` is `raw`, `minute`, `hour` or `auto` (the
    /// default: raw up to a day, per minute up to 14 days, else per hour).
    func history(deviceID: String, fromMs: Int64, toMs: Int64, resolution: String?, limit: Int) async throws -> History {
        guard fromMs <= toMs else { throw Failure.reversedWindow }
        let chosen = try Self.resolution(resolution, fromMs: fromMs, toMs: toMs)
        guard let chosen else {
            return History(samples: try await store.samples(deviceID: deviceID, fromMs: fromMs, toMs: toMs, limit: limit))
        }
        return History(
            resolution: chosen,
            rollups: try await store.rollups(deviceID: deviceID, resolution: chosen, fromMs: fromMs, toMs: toMs, limit: limit)
        )
    }

    /// Stored packets, newest first, with their decode outcome (below the packet id `before` when it is given).
    func packets(deviceID: String, before: Int64? = nil, limit: Int) async throws -> [PacketRow] {
        try await store.packets(deviceID: deviceID, before: before, limit: limit)
    }

    /// `nil`: raw samples.
    static func resolution(_ text: String?, fromMs: Int64, toMs: Int64) throws(Failure) -> RollupResolution? {
        switch text ?? "auto" {
        case "raw": return nil
        case "auto":
            let span = toMs.subtractingReportingOverflow(fromMs)
            if !span.overflow, span.partialValue <= rawWindowMs { return nil }
            return !span.overflow && span.partialValue <= minuteWindowMs ? .minute : .hour
        case let name:
            guard let resolution = RollupResolution(rawValue: name) else { throw .unknownResolution(name) }
            return resolution
        }
    }
}
