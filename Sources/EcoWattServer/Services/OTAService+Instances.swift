import EcoWattStorage
import NIOCore

/// Sessions shared with other server instances (issue 22): a device's session may be started, served and ended on any
/// instance, and the session cached here follows what the store holds.
extension OTAService {
    /// The device's open session from the store, when this instance has none cached and the store is shared (another
    /// instance started it).
    func takeUpStoredSession(_ deviceID: String) async {
        guard notices.shared, live.withLock({ $0[deviceID] }) == nil else { return }
        guard let stored = try? await store.sessions(deviceID: deviceID, outcome: "active", before: nil, limit: 1).first else { return }
        live.withLock { sessions in
            if sessions[deviceID] == nil { sessions[deviceID] = LiveSession(stored) }
        }
    }

    /// Another instance started or ended the device's session: what is cached here goes (its unsaved chunks saved).
    public func sessionChangedElsewhere(_ deviceID: String) async {
        await saveCounters(of: deviceID)
        live.withLock { $0[deviceID] = nil }
    }

    /// Every open session as stored (the change notices were interrupted).
    public func reloadSessions() async {
        await flush()
        guard let sessions = try? await store.activeSessions() else { return }
        live.withLock { live in
            live = Dictionary(sessions.map { ($0.deviceID, LiveSession($0)) }) { first, _ in first }
        }
    }

    /// ``chunk(deviceID:version:index:)``; with a shared store, a device whose session this instance does not know (or
    /// knows in an older version) has it read from the store first.
    public func chunkFromAnyInstance(deviceID: String, version: String, index: String) async throws -> ByteBuffer {
        // The image in this instance's memory first (read from the store once; then every chunk is a lookup).
        if catalog.cached(version) == nil { _ = try await catalog.firmware(version) }
        do {
            return try chunk(deviceID: deviceID, version: version, index: index)
        } catch let error as OTAError where notices.shared {
            // Not `catch A, B where …`: its `where` applies to `B` alone.
            switch error {
            case .noActiveSession, .sessionVersion: break
            default: throw error
            }
            await sessionChangedElsewhere(deviceID)
            await takeUpStoredSession(deviceID)
            return try chunk(deviceID: deviceID, version: version, index: index)
        }
    }
}
