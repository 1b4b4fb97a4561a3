import EcoWattStore
import Logging
import ServiceLifecycle
import Synchronization

/// Tracks when each device was last heard from. Every device request updates it in memory; the service writes the
/// changes to the store every ``flushInterval`` (so a busy poll route does not cost a database write per request).
public final class DeviceActivity: Service, Sendable {
    private let store: any DeviceRegistryStore
    private let logger: Logger
    /// `latest`: newest time per device; `pending`: the part not yet written to the store (a subset of `latest`).
    private let state = Mutex<(latest: [String: Int64], pending: [String: Int64])>(([:], [:]))

    public static let flushInterval = Duration.seconds(2)

    public init(store: any DeviceRegistryStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    /// Records that `deviceID` made a request at `nowMs`.
    public func seen(_ deviceID: String, at nowMs: Int64) {
        state.withLock { state in
            guard state.latest[deviceID] != nil || state.latest.count < Self.maxTrackedDevices else { return }
            let time = max(state.latest[deviceID] ?? 0, nowMs)
            state.latest[deviceID] = time
            state.pending[deviceID] = time
        }
    }

    /// Most device ids tracked in memory: device routes are unauthenticated, so random ids must not grow it forever.
    public static let maxTrackedDevices = 100_000

    /// The newest time known for `deviceID`, including requests not yet written to the store.
    public func lastSeen(_ deviceID: String, stored: Int64) -> Int64 {
        max(stored, state.withLock { $0.latest[deviceID] } ?? 0)
    }

    /// Devices (known or not) heard from at or after `sinceMs`.
    public func activeCount(sinceMs: Int64) -> Int {
        state.withLock { $0.latest.values.reduce(0) { $0 + ($1 >= sinceMs ? 1 : 0) } }
    }

    /// Forgets a deleted device.
    public func forget(_ deviceID: String) {
        state.withLock { state in
            state.latest[deviceID] = nil
            state.pending[deviceID] = nil
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
            logger.warning("could not record last_seen", metadata: ["error": "\(error)", "devices": "\(batch.count)"])
            state.withLock { state in state.pending.merge(batch) { max($0, $1) } }
        }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: Self.flushInterval)
                await self.flush()
            }
        }
        await flush()
    }
}
