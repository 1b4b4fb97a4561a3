import EcoWattStorage
import Logging
import ServiceLifecycle
import Synchronization

/// Tracks when each **known** device (one with a registry row) was last heard from. Every request that comes from the
/// device (a verified upload, or a request from the address it is bound to, see ``DeviceAccess``) updates it in memory; the service writes the changes to the store every ``flushInterval`` (so a busy poll route does not cost a
/// database write per request).
///
/// Device routes are unauthenticated, so requests from ids without a registry row are only counted in aggregate: random
/// ids can never fill the table and hide a real device. Ids join when they get a row (a verified upload, an operator,
/// or a device request that stores something, see ``RetentionPolicy``) and leave when deleted or evicted.
public final class DeviceActivity: Service, Sendable {
    private let store: any DeviceRegistryStore
    private let logger: Logger
    private let metrics: ServerMetrics?
    /// Where a failed flush is logged (rate-limited: with the disk full, every flush fails, one every 2 s).
    private let serverErrors: RateLimitedLog
    private struct State {
        /// Newest time per known device.
        var latest: [String: Int64]
        /// The part of `latest` not yet written to the store.
        var pending: [String: Int64] = [:]
        /// Requests from ids without a registry row.
        var unknownRequests = 0
    }
    private let state: Mutex<State>

    public static let flushInterval = Duration.seconds(2)

    /// Loads the known devices from the store.
    public init(
        store: any DeviceRegistryStore,
        logger: Logger,
        serverErrors: RateLimitedLog,
        metrics: ServerMetrics? = nil
    ) async throws {
        self.store = store
        self.logger = logger
        self.metrics = metrics
        self.serverErrors = serverErrors
        state = Mutex(State(latest: try await store.knownDevices()))
    }

    /// Records a request for `deviceID` at `nowMs` (counted in aggregate when the id is not known).
    /// - Parameter fromDevice: it came from where the device is bound; otherwise it does not make the device `online`.
    public func seen(_ deviceID: String, at nowMs: Int64, fromDevice: Bool = true) {
        let known = state.withLock { state in
            guard let previous = state.latest[deviceID] else {
                state.unknownRequests += 1
                return false
            }
            if fromDevice, nowMs > previous {
                state.latest[deviceID] = nowMs
                state.pending[deviceID] = nowMs
            }
            return true
        }
        if !known { metrics?.increment("ecowatt_unknown_device_requests_total") }
    }

    /// `deviceID` has a registry row now (first upload, or admitted by a device request): track it from `nowMs`.
    public func admit(_ deviceID: String, at nowMs: Int64) {
        state.withLock { state in
            let time = max(state.latest[deviceID] ?? 0, nowMs)
            state.latest[deviceID] = time
            state.pending[deviceID] = time
        }
    }

    /// The newest time known for `deviceID`, including requests not yet written to the store.
    public func lastSeen(_ deviceID: String, stored: Int64) -> Int64 {
        max(stored, state.withLock { $0.latest[deviceID] } ?? 0)
    }

    /// Known devices heard from at or after `sinceMs`.
    public func activeCount(sinceMs: Int64) -> Int {
        state.withLock { $0.latest.values.reduce(0) { $0 + ($1 >= sinceMs ? 1 : 0) } }
    }

    /// How many of `deviceIDs` are known devices.
    public func knownCount(of deviceIDs: some Sequence<String>) -> Int {
        state.withLock { state in deviceIDs.reduce(0) { $0 + (state.latest[$1] != nil ? 1 : 0) } }
    }

    /// Known devices tracked, and requests from unknown ids since start.
    public var counts: (known: Int, unknownRequests: Int) {
        state.withLock { ($0.latest.count, $0.unknownRequests) }
    }

    /// Forgets deleted or evicted devices.
    public func forget(_ deviceIDs: [String]) {
        state.withLock { state in
            for deviceID in deviceIDs {
                state.latest[deviceID] = nil
                state.pending[deviceID] = nil
            }
        }
    }

    /// Writes what is pending to the store.
    public func flush() async {
        let batch = state.withLock { state -> [String: Int64] in
            defer { state.pending = [:] }
            return state.pending
        }
        do {
            try await store.recordLastSeen(batch)
        } catch {
            serverErrors.log(
                level: .warning,
                kind: "last_seen not recorded",
                "could not record last_seen",
                metadata: ["error": "\(error.logDescription)", "devices": "\(batch.count)"]
            )
            state.withLock { state in
                for (device, time) in batch where state.latest[device] != nil {
                    state.pending[device] = max(state.pending[device] ?? 0, time)
                }
            }
        }
    }

    public func run() async throws {
        await repeatUntilShutdown(every: Self.flushInterval) { await self.flush() }
        await flush()
    }
}
