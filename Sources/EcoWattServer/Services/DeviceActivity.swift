import EcoWattStore
import Logging
import ServiceLifecycle
import Synchronization

/// Tracks when each device was last heard from. Every device request updates it in memory; the service writes the
/// changes to the store every ``flushInterval`` (so a busy poll route does not cost a database write per request).
public final class DeviceActivity: Service, Sendable {
    private let store: any DeviceRegistryStore
    private let logger: Logger
    private let pending = Mutex<[String: Int64]>([:])
    private let latest = Mutex<[String: Int64]>([:])

    public static let flushInterval = Duration.seconds(2)

    public init(store: any DeviceRegistryStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    /// Records that `deviceID` made a request at `nowMs`.
    public func seen(_ deviceID: String, at nowMs: Int64) {
        latest.withLock { latest in
            guard latest[deviceID] != nil || latest.count < Self.maxTrackedDevices else { return }
            latest[deviceID] = max(latest[deviceID] ?? 0, nowMs)
        }
        pending.withLock { pending in
            guard pending[deviceID] != nil || pending.count < Self.maxTrackedDevices else { return }
            pending[deviceID] = max(pending[deviceID] ?? 0, nowMs)
        }
    }

    /// Most device ids tracked in memory: device routes are unauthenticated, so random ids must not grow it forever.
    public static let maxTrackedDevices = 100_000

    /// The newest time known for `deviceID`, including requests not yet written to the store.
    public func lastSeen(_ deviceID: String, stored: Int64) -> Int64 {
        max(stored, latest.withLock { $0[deviceID] } ?? 0)
    }

    /// Forgets a deleted device.
    public func forget(_ deviceID: String) {
        pending.withLock { _ = $0.removeValue(forKey: deviceID) }
        latest.withLock { _ = $0.removeValue(forKey: deviceID) }
    }

    /// Writes what is pending to the store.
    public func flush() async {
        let batch = pending.withLock { state -> [String: Int64] in
            defer { state = [:] }
            return state
        }
        do {
            try await store.recordLastSeen(batch)
        } catch {
            logger.warning("could not record last_seen", metadata: ["error": "\(error)", "devices": "\(batch.count)"])
            pending.withLock { state in state.merge(batch) { max($0, $1) } }
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
