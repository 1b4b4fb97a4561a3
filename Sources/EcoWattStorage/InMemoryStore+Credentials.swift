/// ``DeviceCredentialStore`` in memory, as the SQLite store keeps `device_credentials`.
extension InMemoryStore {
    public func deviceCredentials() async throws -> [String: DeviceCredential] {
        state.withLock { $0.credentials }
    }

    public func deviceCredential(_ deviceID: String) async throws -> DeviceCredential? {
        state.withLock { $0.credentials[deviceID] }
    }

    public func setDeviceKey(deviceID: String, key: [UInt8]?) async throws {
        state.withLock { $0.credentials[deviceID] = key.map { DeviceCredential(key: $0) } }
    }

    public func provisionDevice(_ deviceID: String, key: [UInt8], replace: Bool, nowMs: Int64) async throws -> Bool {
        state.withLock { state in
            if state.credentials[deviceID]?.key != nil, !replace { return false }
            state.registry.adopt(deviceID, nowMs: nowMs)
            state.credentials[deviceID] = DeviceCredential(key: key, updatedAtMs: nowMs)
            return true
        }
    }

    public func setNextDeviceKey(deviceID: String, key: [UInt8]?, nowMs: Int64) async throws {
        state.withLock { state in
            var credential = state.credentials[deviceID] ?? DeviceCredential(key: nil)
            credential.nextKey = key
            credential.updatedAtMs = nowMs
            state.credentials[deviceID] = credential
        }
    }

    public func promoteNextDeviceKey(deviceID: String, nowMs: Int64) async throws -> Bool {
        state.withLock { state in
            guard var credential = state.credentials[deviceID], let next = credential.nextKey else { return false }
            credential.key = next
            credential.nextKey = nil
            credential.updatedAtMs = nowMs
            state.credentials[deviceID] = credential
            return true
        }
    }

    public func revokeDevice(deviceID: String, nowMs: Int64) async throws -> Bool {
        state.withLock { state in
            var credential = state.credentials[deviceID] ?? DeviceCredential(key: nil)
            guard credential.revokedAtMs == nil else { return false }
            credential.revokedAtMs = nowMs
            credential.updatedAtMs = nowMs
            state.credentials[deviceID] = credential
            return true
        }
    }

    public func recordRefusedUpload(deviceID: String, nowMs: Int64) async throws {
        admitting(deviceID, nowMs: nowMs) { state, _ in
            state.registry.devices[deviceID]?.refusedUploads += 1
            if let seen = state.registry.devices[deviceID]?.lastSeenMs { state.registry.devices[deviceID]?.lastSeenMs = max(seen, nowMs) }
        }
    }
}
