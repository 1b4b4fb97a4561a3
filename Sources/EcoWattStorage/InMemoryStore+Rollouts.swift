/// Rollouts in memory (issue 21).
struct RolloutTables {
    var rollouts: [Int64: RolloutRecord] = [:]
    var devices: [Int64: [String: RolloutDeviceRecord]] = [:]
    var nextID: Int64 = 1

    /// Throws for the devices of `deviceIDs` already in an open rollout (those of the oldest such rollout).
    func refuseTaken(_ deviceIDs: [String]) throws {
        let wanted = Set(deviceIDs)
        for (id, other) in rollouts.sorted(by: { $0.key < $1.key }) where other.status.isOpen {
            let taken = wanted.intersection((devices[id] ?? [:]).keys)
            if !taken.isEmpty { throw RolloutStoreError.devicesInOpenRollout(rolloutID: id, deviceIDs: taken.sorted()) }
        }
    }
}

extension InMemoryStore: RolloutStore {
    public func createRollout(_ rollout: RolloutRecord, devices: [RolloutDeviceRecord]) async throws -> RolloutRecord {
        try state.withLock { state in
            try state.rollouts.refuseTaken(devices.map(\.deviceID))
            var stored = rollout
            stored.id = state.rollouts.nextID
            state.rollouts.nextID += 1
            state.rollouts.rollouts[stored.id] = stored
            var entries: [String: RolloutDeviceRecord] = [:]
            for var device in devices {
                device.rolloutID = stored.id
                entries[device.deviceID] = device
            }
            state.rollouts.devices[stored.id] = entries
            return stored
        }
    }

    public func addRolloutDevices(rolloutID: Int64, devices: [RolloutDeviceRecord]) async throws {
        try state.withLock { state in
            try state.rollouts.refuseTaken(devices.map(\.deviceID))
            for var device in devices {
                device.rolloutID = rolloutID
                state.rollouts.devices[rolloutID, default: [:]][device.deviceID] = device
            }
        }
    }

    public func releaseRolloutDevices(rolloutID: Int64, deviceIDs: [String]) async throws -> Int {
        state.withLock { state in
            deviceIDs.reduce(0) { released, deviceID in
                released + (state.rollouts.devices[rolloutID]?.removeValue(forKey: deviceID) == nil ? 0 : 1)
            }
        }
    }

    public func rollout(id: Int64) async throws -> RolloutRecord? {
        state.withLock { $0.rollouts.rollouts[id] }
    }

    public func rollouts(status: RolloutStatus?, before: Int64?, limit: Int) async throws -> [RolloutRecord] {
        state.withLock { state in
            Array(
                state.rollouts.rollouts.values
                    .filter { ($0.id < before ?? .max) && (status == nil || $0.status == status) }
                    .sorted { $0.id > $1.id }
                    .prefix(max(0, limit))
            )
        }
    }

    public func updateRollout(_ rollout: RolloutRecord, from previous: RolloutRecord) async throws -> Bool {
        state.withLock { state in
            guard var stored = state.rollouts.rollouts[rollout.id],
                (stored.status, stored.currentWave, stored.waveOpenedAtMs, stored.reason, stored.updatedAtMs)
                    == (previous.status, previous.currentWave, previous.waveOpenedAtMs, previous.reason, previous.updatedAtMs)
            else { return false }
            stored.status = rollout.status
            stored.currentWave = rollout.currentWave
            stored.waveOpenedAtMs = rollout.waveOpenedAtMs
            stored.reason = rollout.reason
            stored.failedBeforeResume = rollout.failedBeforeResume
            stored.finishedBeforeResume = rollout.finishedBeforeResume
            stored.updatedAtMs = rollout.updatedAtMs
            state.rollouts.rollouts[rollout.id] = stored
            return true
        }
    }

    public func rolloutDevices(
        rolloutID: Int64,
        wave: Int?,
        state deviceState: RolloutDeviceState?,
        after: String?,
        limit: Int
    ) async throws
        -> [RolloutDeviceRecord]
    {
        state.withLock { state in
            Array(
                (state.rollouts.devices[rolloutID] ?? [:]).values
                    .filter { device in
                        (after.map { device.deviceID > $0 } ?? true) && (wave == nil || device.wave == wave)
                            && (deviceState == nil || device.state == deviceState)
                    }
                    .sorted { $0.deviceID < $1.deviceID }
                    .prefix(max(0, limit))
            )
        }
    }

    public func updateRolloutDevice(_ device: RolloutDeviceRecord, from previous: RolloutDeviceRecord) async throws -> Bool {
        state.withLock { state in
            guard var stored = state.rollouts.devices[device.rolloutID]?[device.deviceID],
                (stored.state, stored.reason, stored.healthyUploads, stored.updatedAtMs)
                    == (previous.state, previous.reason, previous.healthyUploads, previous.updatedAtMs)
            else { return false }
            stored.state = device.state
            stored.reason = device.reason
            stored.offeredAtMs = device.offeredAtMs
            stored.startedAtMs = device.startedAtMs
            stored.installedAtMs = device.installedAtMs
            stored.finishedAtMs = device.finishedAtMs
            stored.healthyUploads = device.healthyUploads
            stored.updatedAtMs = device.updatedAtMs
            state.rollouts.devices[device.rolloutID]?[device.deviceID] = stored
            return true
        }
    }

    public func openRolloutEntry(deviceID: String) async throws -> (rollout: RolloutRecord, device: RolloutDeviceRecord)? {
        state.withLock { state in
            for (id, rollout) in state.rollouts.rollouts.sorted(by: { $0.key > $1.key }) where rollout.status.isOpen {
                if let device = state.rollouts.devices[id]?[deviceID] { return (rollout, device) }
            }
            return nil
        }
    }

    public func rolloutCounts(rolloutID: Int64) async throws -> [Int: [RolloutDeviceState: Int]] {
        state.withLock { state in
            (state.rollouts.devices[rolloutID] ?? [:]).values.reduce(into: [:]) { counts, device in
                counts[device.wave, default: [:]][device.state, default: 0] += 1
            }
        }
    }
}
