import EcoWattStorage

/// Pacing (at most `max_concurrent_downloads` at once, `max_new_downloads_per_minute` started a minute) and the
/// admission of a download at `initiate`.
extension RolloutService {
    /// The rollout's devices downloading now, as stored (enough of them to judge the concurrency cap).
    func downloading(_ rollout: RolloutRecord) async throws -> [RolloutDeviceRecord] {
        try await store.rolloutDevices(
            rolloutID: rollout.id,
            wave: nil,
            state: .downloading,
            after: nil,
            limit: rollout.settings.maxConcurrentDownloads + (reserved[rollout.id]?.count ?? 0) + 1
        )
    }

    /// Why no new download may start now, if pacing says so: the downloads in progress (`downloading`, read just
    /// before, and those admitted but not yet stored), and those started in the last minute, remembered in memory
    /// whatever became of them (after a restart, the ones still downloading stand in). Does not suspend, so that
    /// ``admit(deviceID:version:)`` can check and reserve in one step.
    func pacingRefusal(_ rollout: RolloutRecord, downloading: [RolloutDeviceRecord]) -> String? {
        let settings = rollout.settings
        let inProgress = Set(downloading.map(\.deviceID)).union(reserved[rollout.id] ?? []).count
        if inProgress >= settings.maxConcurrentDownloads {
            return "\(inProgress) downloads in progress (at most \(settings.maxConcurrentDownloads))"
        }
        let now = clock()
        let remembered = recentStarts[rollout.id, default: []].filter { $0 > now - 60_000 }
        recentStarts[rollout.id] = remembered.isEmpty ? nil : remembered
        let recent = max(remembered.count, downloading.count { ($0.startedAtMs ?? 0) > now - 60_000 })
        if recent >= settings.maxNewDownloadsPerMinute {
            return "\(recent) downloads started in the last minute (at most \(settings.maxNewDownloadsPerMinute))"
        }
        return nil
    }

    /// `initiate` of `version` from the device's address. A device of an open rollout of that version starts its
    /// download only if the rollout is active, its wave open and pacing allows: the offer at `/ota/check` wrote
    /// nothing, so devices that checked at the same moment all heard "yes"; here the check and the reservation run
    /// without a suspension between them, so the caps hold. A device already downloading (a retry after a failed
    /// chunk) goes on, even when the rollout was paused meanwhile. A device in no open rollout joins one that follows
    /// the fleet. Returns the rollout (the session's deployment), `nil` when no rollout is concerned; throws
    /// ``Failure/held(_:)`` when it may not start now.
    public func admit(deviceID: String, version: String) async throws -> Int64? {
        var entry = try await store.openRolloutEntry(deviceID: deviceID)
        if entry == nil, await joinFleetWide(deviceID: deviceID, version: version) {
            entry = try await store.openRolloutEntry(deviceID: deviceID)
        }
        guard let (rollout, device) = entry, rollout.version == version else { return nil }
        guard device.state == .pending || device.state == .offered || device.state == .downloading else { return rollout.id }
        if device.state != .downloading {
            guard rollout.status == .active else { throw Failure.held("rollout \(rollout.id) is \(rollout.status.rawValue)") }
            guard device.wave <= rollout.currentWave else {
                throw Failure.held("wave \(device.wave + 1) of rollout \(rollout.id) is not open yet")
            }
            // The read suspends: another admission may store its device and release its reservation meanwhile, and a
            // read that began before that store can miss the device both ways (two downloads under a cap of one, seen
            // once in CI). Such a read is taken again; after a few, the device is held and tries again later.
            var inProgress: [RolloutDeviceRecord]? = nil
            for _ in 0..<4 where inProgress == nil {
                let released = reservationsReleased
                let read = try await downloading(rollout)
                if released == reservationsReleased { inProgress = read }
            }
            guard let inProgress else { throw Failure.held("rollout \(rollout.id): other downloads are starting") }
            // No suspension from here to the reservation.
            if let refusal = pacingRefusal(rollout, downloading: inProgress) { throw Failure.held("rollout \(rollout.id): \(refusal)") }
            reserved[rollout.id, default: []].insert(deviceID)
            recentStarts[rollout.id, default: []].append(clock())
        }
        defer {
            if reserved[rollout.id]?.remove(deviceID) != nil { reservationsReleased += 1 }
        }
        await update(deviceID) { current, entry, now in
            guard current.id == rollout.id else { return false }
            entry.state = .downloading
            entry.startedAtMs = now
            return true
        }
        return rollout.id
    }
}
