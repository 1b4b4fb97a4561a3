import EcoWattStorage
import FirmwareImage

/// Creating, judging and steering rollouts.
extension RolloutService {
    /// Which devices a new rollout targets; a filter is resolved to a list at creation (devices registered later are
    /// not added silently).
    public enum Target: Sendable {
        case devices([String])
        case all
        case filter(firmwareVersion: String?, idPrefix: String?)
    }

    /// Creates a rollout of `version` to the target's devices, in waves. A staged rollout leaves out devices already
    /// running the version or not admitted; a deployment (``RolloutKind/deployment``) takes a listed device whatever it
    /// runs (the offer says "already running"), and one that follows the fleet may start empty. Devices of open
    /// deployments are taken from them (a deployment emptied so, or one that followed the fleet replaced by another,
    /// is cancelled); devices of an open staged rollout are refused, or, for a deployment to every device, left to it.
    public func create(
        version: String,
        target: Target,
        settings: RolloutSettings,
        createdBy: String,
        notes: String?,
        rollbackOf: Int64? = nil
    ) async throws -> RolloutRecord {
        guard try await catalog.firmware(version) != nil else { throw Failure.unknownVersion(version) }
        let now = clock()
        let deployment = settings.kind == .deployment
        var targets: [(id: String, fromVersion: String?)]
        switch target {
        case .devices(let ids):
            var rows: [(id: String, fromVersion: String?)] = []
            for id in Set(ids).sorted() {
                if let row = try await store.device(id) {
                    if deployment || (row.firmwareVersion != version && row.admission != "pending") {
                        rows.append((id, row.firmwareVersion))
                    }
                } else if deployment {
                    rows.append((id, nil))
                }
            }
            targets = rows
        case .all, .filter:
            var filter = DeviceFilter()
            if case .filter(let firmwareVersion, let idPrefix) = target {
                filter = DeviceFilter(firmwareVersion: firmwareVersion, idPrefix: idPrefix)
            }
            targets = try await store.allDevices(filter: filter)
                .filter { $0.firmwareVersion != version && $0.admission != "pending" }
                .map { ($0.deviceID, $0.firmwareVersion) }
        }
        let open = try await openRollouts()
        var staged: [String: Int64] = [:]
        for other in open where other.settings.kind == .staged {
            for device in try await store.allRolloutDevices(rolloutID: other.id, state: nil) { staged[device.deviceID] = other.id }
        }
        if settings.followsFleet {
            targets.removeAll { staged[$0.id] != nil }
        } else if let taken = targets.first(where: { staged[$0.id] != nil }), let owner = staged[taken.id] {
            throw Failure.busyDevices(rolloutID: owner, deviceIDs: targets.map(\.id).filter { staged[$0] == owner })
        }
        guard !targets.isEmpty || settings.followsFleet else { throw Failure.noDevices }
        let ends = RolloutPlan.waveEnds(count: targets.count, percents: settings.wavePercents, minPerWave: settings.minDevicesPerWave)
        let waves = RolloutPlan.waves(
            rolloutID: "\(version)|\(now)|\(createdBy)",
            devices: targets.map(\.id),
            percents: settings.wavePercents,
            minPerWave: settings.minDevicesPerWave
        )
        let record = RolloutRecord(
            version: version,
            settings: settings,
            waveCount: ends.count,
            rollbackOf: rollbackOf,
            createdBy: createdBy,
            notes: notes,
            nowMs: now
        )
        let entries = targets.map { RolloutDeviceRecord(deviceID: $0.id, wave: waves[$0.id] ?? 0, fromVersion: $0.fromVersion, nowMs: now) }
        let released = try await release(entries.map(\.deviceID), from: open, replacingAll: settings.followsFleet && deployment)
        do {
            let created = try await store.createRollout(record, devices: entries)
            for other in released { _ = try await setStatus(other, to: .cancelled, reason: "replaced by \(created.id)") }
            metrics?.increment("ecowatt_rollouts_created_total")
            logger.notice("rollout created", metadata: ["rollout": "\(created.id)", "version": "\(version)", "devices": "\(entries.count)"])
            return created
        } catch RolloutStoreError.devicesInOpenRollout(let id, let devices) {
            throw Failure.busyDevices(rolloutID: id, deviceIDs: devices)
        }
    }

    /// Open rollouts (active, paused, halted), newest first.
    func openRollouts() async throws -> [RolloutRecord] {
        var open: [RolloutRecord] = []
        for status in [RolloutStatus.active, .paused, .halted] {
            open += try await store.rollouts(status: status, before: nil, limit: 1000)
        }
        return open.sorted { $0.id > $1.id }
    }

    /// Takes `deviceIDs` out of the open deployments among `open`; returns the deployments to cancel as replaced: those
    /// left without devices, and with `replacingAll` (a new deployment to every device) every open deployment.
    func release(_ deviceIDs: [String], from open: [RolloutRecord], replacingAll: Bool) async throws -> [Int64] {
        var replaced: [Int64] = []
        for other in open where other.settings.kind == .deployment {
            _ = try await store.releaseRolloutDevices(rolloutID: other.id, deviceIDs: deviceIDs)
            let left = try await store.rolloutDevices(rolloutID: other.id, wave: nil, state: nil, after: nil, limit: 1)
            if replacingAll || (left.isEmpty && !other.settings.followsFleet) { replaced.append(other.id) }
        }
        return replaced
    }

    /// The rollout and its devices per wave and state.
    public func status(_ id: Int64) async throws -> (rollout: RolloutRecord, counts: [Int: [RolloutDeviceState: Int]]) {
        guard let rollout = try await store.rollout(id: id) else { throw Failure.unknownRollout(id) }
        return (rollout, try await store.rolloutCounts(rolloutID: id))
    }

    // MARK: The rules, every few seconds

    /// Judges every active rollout: timeouts become failures, then the rules advance, halt or complete it.
    public func evaluate() async {
        do {
            for rollout in try await store.rollouts(status: .active, before: nil, limit: 1000) {
                try await evaluate(rollout)
            }
        } catch  where error.isShutdown {
        } catch {
            logger.warning("rollouts not evaluated", metadata: ["error": "\(error.logDescription)"])
        }
    }

    func evaluate(_ rollout: RolloutRecord) async throws {
        let now = clock()
        let settings = rollout.settings
        // Timeouts: a download that did not end in time, an installed device silent on the new version, and, when the
        // wave timed out, whatever of it is still in flight.
        let waveTimedOut = settings.waveTimeoutMinutes.map { now - rollout.waveOpenedAtMs >= Int64($0) * 60_000 } ?? false
        for state in [RolloutDeviceState.downloading, .installed] {
            for original in try await store.allRolloutDevices(rolloutID: rollout.id, state: state) {
                var device = original
                let reason: String?
                if state == .downloading, let started = device.startedAtMs, now - started >= Int64(settings.downloadTimeoutMinutes) * 60_000 {
                    reason = "download_timeout"
                } else if state == .installed, let installed = device.installedAtMs,
                    now - installed >= Int64(settings.healthTimeoutMinutes) * 60_000
                {
                    reason = device.healthyUploads == 0 ? "silent_after_install" : "health_timeout"
                } else if waveTimedOut, device.wave == rollout.currentWave {
                    reason = "wave_timeout"
                } else {
                    reason = nil
                }
                guard let reason else { continue }
                device.state = .failed
                device.reason = reason
                device.finishedAtMs = now
                device.updatedAtMs = now
                // Changed meanwhile (its report arrived at another instance): judged again next round.
                guard try await store.updateRolloutDevice(device, from: original) else { continue }
                await stored(device, previously: original.state)
            }
        }
        let counts = try await store.rolloutCounts(rolloutID: rollout.id)
        let overall = RolloutPlan.Tally(waves: counts.values)
        let wave = RolloutPlan.Tally(waves: [counts[rollout.currentWave] ?? [:]])
        let decision = RolloutPlan.decide(
            overall: overall,
            wave: wave,
            isLastWave: rollout.currentWave + 1 >= rollout.waveCount,
            thresholds: RolloutPlan.Thresholds(settings),
            beforeResume: (rollout.failedBeforeResume, rollout.finishedBeforeResume)
        )
        var changed = rollout
        switch decision {
        case .hold:
            return
        case .advance:
            guard now - rollout.waveOpenedAtMs >= Int64(settings.waveDelayMinutes) * 60_000 else { return }
            changed.currentWave += 1
            changed.waveOpenedAtMs = now
        case .halt(let reason):
            changed.status = .halted
            changed.reason = reason
            metrics?.increment("ecowatt_rollouts_halted_total")
            logger.warning("rollout halted", metadata: ["rollout": "\(rollout.id)", "reason": "\(reason)"])
        case .complete:
            // A deployment stays active until it is cancelled or replaced, as deployments always did.
            guard settings.kind == .staged else { return }
            changed.status = .completed
        }
        changed.updatedAtMs = now
        // Another instance's evaluator or an operator changed it since it was read: nothing is decided this round.
        guard try await store.updateRollout(changed, from: rollout) else {
            metrics?.increment("ecowatt_rollout_write_conflicts_total")
            return
        }
        let action =
            switch decision {
            case .advance: "rolloutAdvanced"
            case .halt: "rolloutHalted"
            default: "rolloutCompleted"
            }
        await decided(action, changed)
    }

    // MARK: Operators

    /// Pauses an active rollout, resumes a paused or halted one, or cancels an open one. Resuming a halted one keeps
    /// its failed and finished counts as the point its halt rules count from.
    public func setStatus(_ id: Int64, to status: RolloutStatus, reason: String?) async throws -> RolloutRecord {
        let counts = status == .active ? RolloutPlan.Tally(waves: try await store.rolloutCounts(rolloutID: id).values) : RolloutPlan.Tally()
        return try await modify(id) { rollout, now in
            let allowed: Bool =
                switch status {
                case .paused: rollout.status == .active
                case .active: rollout.status == .paused || rollout.status == .halted
                case .cancelled: rollout.status.isOpen
                default: false
                }
            guard allowed else { throw Failure.wrongState("rollout \(id) is \(rollout.status.rawValue)") }
            if rollout.status == .halted, status == .active {
                rollout.failedBeforeResume = counts[.failed]
                rollout.finishedBeforeResume = counts.finished
            }
            rollout.status = status
            if status == .active { rollout.reason = nil } else if let reason { rollout.reason = reason }
        }
    }

    /// Opens the next wave now, whatever the evidence (an operator's call).
    public func advance(_ id: Int64) async throws -> RolloutRecord {
        try await modify(id) { rollout, now in
            guard rollout.status.isOpen, rollout.currentWave + 1 < rollout.waveCount else {
                throw Failure.wrongState("rollout \(id) is \(rollout.status.rawValue) in wave \(rollout.currentWave + 1) of \(rollout.waveCount)")
            }
            rollout.currentWave += 1
            rollout.waveOpenedAtMs = now
        }
    }

    /// Applies an operator's `change` to rollout `id` as a compare-and-swap: when the evaluator (of any instance)
    /// wrote it in between, it is read again and the change judged anew, so that neither write is lost.
    func modify(_ id: Int64, _ change: (inout RolloutRecord, Int64) throws -> Void) async throws -> RolloutRecord {
        for _ in 0..<8 {
            guard let read = try await store.rollout(id: id) else { throw Failure.unknownRollout(id) }
            var rollout = read
            let now = clock()
            try change(&rollout, now)
            rollout.updatedAtMs = now
            if try await store.updateRollout(rollout, from: read) { return rollout }
        }
        throw Failure.wrongState("rollout \(id) kept changing; try again")
    }

    /// Puts the failed devices back to pending (they are offered again at their next check); returns how many.
    public func retryFailed(_ id: Int64) async throws -> Int {
        guard let rollout = try await store.rollout(id: id) else { throw Failure.unknownRollout(id) }
        guard rollout.status.isOpen else { throw Failure.wrongState("rollout \(id) is \(rollout.status.rawValue)") }
        var retried = 0
        for original in try await store.allRolloutDevices(rolloutID: id, state: .failed) {
            var device = original
            device.state = .pending
            device.reason = nil
            device.startedAtMs = nil
            device.installedAtMs = nil
            device.finishedAtMs = nil
            device.healthyUploads = 0
            device.updatedAtMs = clock()
            // One that changed meanwhile is no longer failed as read: not retried.
            guard try await store.updateRolloutDevice(device, from: original) else { continue }
            retried += 1
        }
        return retried
    }
}

/// Rolling back.
extension RolloutService {
    /// A new one-wave rollout of the previous image (`version`, or the one the devices ran before when they agree) to
    /// the devices of rollout `id` that installed its image. The firmware accepts any image signed with the keys it
    /// was built with, older ones too; an image that no longer verifies with the server's keys is refused. Rollout
    /// `id` is cancelled first (a device is in one open rollout at a time).
    public func rollback(_ id: Int64, to version: String?, createdBy: String) async throws -> RolloutRecord {
        guard let original = try await store.rollout(id: id) else { throw Failure.unknownRollout(id) }
        let installed = try await store.allRolloutDevices(rolloutID: id, state: nil).filter { $0.installedAtMs != nil }
        guard !installed.isEmpty else { throw Failure.wrongState("no device of rollout \(id) installed \(original.version)") }
        let previous = Set(installed.compactMap(\.fromVersion))
        guard let target = version ?? (previous.count == 1 ? previous.first : nil) else {
            throw Failure.wrongState("the devices ran \(previous.sorted().joined(separator: ", ")) before: name the version to return to")
        }
        guard let firmware = try await catalog.firmware(target) else { throw Failure.unknownVersion(target) }
        guard firmware.signatureVerified == true else {
            throw Failure.wrongState("\(target) does not verify with the server's signing keys, so the devices would refuse it")
        }
        if original.status.isOpen {
            _ = try await setStatus(id, to: .cancelled, reason: "rolled back to \(target)")
        }
        var settings = RolloutSettings()
        settings.wavePercents = [100]
        settings.maxConcurrentDownloads = original.settings.maxConcurrentDownloads
        settings.maxNewDownloadsPerMinute = original.settings.maxNewDownloadsPerMinute
        let devices = installed.filter { version == nil || $0.fromVersion == nil || $0.fromVersion == target }.map(\.deviceID)
        return try await create(
            version: target,
            target: .devices(devices),
            settings: settings,
            createdBy: createdBy,
            notes: "rollback of rollout \(id) (\(original.version))",
            rollbackOf: id
        )
    }
}

/// Reads for the API.
extension RolloutService {
    public func list(status: RolloutStatus?, before: Int64?, limit: Int) async throws -> [RolloutRecord] {
        try await store.rollouts(status: status, before: before, limit: limit)
    }

    public func devices(
        _ id: Int64,
        wave: Int?,
        state: RolloutDeviceState?,
        after: String?,
        limit: Int
    ) async throws
        -> [RolloutDeviceRecord]
    {
        guard try await store.rollout(id: id) != nil else { throw Failure.unknownRollout(id) }
        return try await store.rolloutDevices(rolloutID: id, wave: wave, state: state, after: after, limit: limit)
    }
}
