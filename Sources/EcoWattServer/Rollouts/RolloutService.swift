import EcoWattProtocol
import EcoWattStorage
import FirmwareImage
import Logging
import ServiceLifecycle
import Synchronization

/// Staged firmware rollouts (issue 21), server-side with the unchanged firmware: a device in an open rollout is
/// offered the image at `/ota/check` only once its wave is open, the rollout is active and pacing allows; its
/// `initiate`, boot reports and failures move its state; its signed uploads on the new version make it healthy. Every
/// ``evaluationInterval`` the rules (``RolloutPlan``) look at each active rollout: timeouts become failures, then it
/// advances, halts or completes.
///
/// Evidence that moves a rollout comes only from the device's bound address (initiate, progress, complete are bound
/// routes) or from signed uploads; the open `/ota/check` only reads. The actor serialises the transitions (a device's
/// events and the evaluator never interleave inside one read-modify-write).
public actor RolloutService: Service {
    public enum Offer: Sendable, Equatable {
        /// Offer this version.
        case offer(version: String)
        /// In a rollout, not offered now, and why.
        case withheld(String)
    }

    public enum Failure: Error, Equatable {
        case unknownRollout(Int64)
        case noDevices
        case unknownVersion(String)
        case wrongState(String)
        case busyDevices(rolloutID: Int64, deviceIDs: [String])
        /// The rollout does not let this download start now (paused, wave not open, pacing).
        case held(String)
    }

    let store: any RolloutStore & DeviceRegistryStore & OTAStore
    let catalog: FirmwareCatalog
    /// Tells the other instances (PostgreSQL) which devices started or stopped waiting for health evidence.
    let notices: InstanceNotices
    let logger: Logger
    let metrics: ServerMetrics?
    nonisolated let clock: @Sendable () -> Int64
    /// Told of each rollout decision (the audit trail, the MQTT event): the action and the rollout after it.
    let decided: @Sendable (_ action: String, _ rollout: RolloutRecord) async -> Void
    public static let evaluationInterval = Duration.seconds(5)
    /// Devices installed in an open rollout and waiting for health evidence: the upload route asks here first, so an
    /// upload of any other device costs one lock, not a database read.
    nonisolated let awaitingHealth = Mutex<Set<String>>([])
    /// When each rollout's downloads of the last minute started (pacing per minute).
    var recentStarts: [Int64: [Int64]] = [:]
    /// Devices admitted to start a download whose new state is being stored (pacing counts them meanwhile).
    var reserved: [Int64: Set<String>] = [:]
    /// Reservations released so far (their state stored, or not). A read of the downloading devices that began before
    /// one was released may miss both the reservation and the stored state; ``admit(deviceID:version:)`` reads again.
    var reservationsReleased = 0

    public init(
        store: any RolloutStore & DeviceRegistryStore & OTAStore,
        catalog: FirmwareCatalog,
        notices: InstanceNotices = InstanceNotices(feed: nil),
        logger: Logger,
        metrics: ServerMetrics? = nil,
        clock: @escaping @Sendable () -> Int64,
        decided: @escaping @Sendable (_ action: String, _ rollout: RolloutRecord) async -> Void = { _, _ in }
    ) {
        self.store = store
        self.catalog = catalog
        self.notices = notices
        self.logger = logger
        self.metrics = metrics
        self.clock = clock
        self.decided = decided
    }

    public func run() async throws {
        await adoptLegacyDeployments()
        await loadAwaitingHealth()
        await repeatUntilShutdown(every: Self.evaluationInterval) { await self.evaluate() }
    }

    /// Reads the installed devices of open rollouts: added to what is known at start (uploads may already have added
    /// some), replacing it when notices from other instances may have been missed (`replacing`).
    func loadAwaitingHealth(replacing: Bool = false) async {
        do {
            var installed: Set<String> = []
            for rollout in try await openRollouts() {
                installed.formUnion(try await store.allRolloutDevices(rolloutID: rollout.id, state: .installed).map(\.deviceID))
            }
            awaitingHealth.withLock { awaiting in
                if replacing { awaiting = installed } else { awaiting.formUnion(installed) }
            }
        } catch {
            logger.warning("rollout devices not loaded", metadata: ["error": "\(error.logDescription)"])
        }
    }

    /// Another instance changed the device's rollout entry: whether it awaits health evidence is read again.
    func deviceChangedElsewhere(_ deviceID: String) async {
        let installed: Bool
        do {
            installed = try await store.openRolloutEntry(deviceID: deviceID)?.device.state == .installed
        } catch {
            return
        }
        awaitingHealth.withLock { awaiting in
            if installed { awaiting.insert(deviceID) } else { awaiting.remove(deviceID) }
        }
    }

    /// Whether an upload of `deviceID` is evidence some rollout waits for.
    public nonisolated func awaitsHealth(_ deviceID: String) -> Bool {
        awaitingHealth.withLock { $0.contains(deviceID) }
    }

    /// The MQTT event of a decision: `{"event","rollout_id","version","status","wave","wave_count","reason","at_ms"}`.
    public static func event(_ action: String, _ rollout: RolloutRecord, atMs: Int64) -> [UInt8] {
        var members: [(String, JSONValue)] = [
            ("event", .string(action)), ("rollout_id", .int(rollout.id)), ("version", .string(rollout.version)),
            ("status", .string(rollout.status.rawValue)), ("wave", .int(Int64(rollout.currentWave + 1))),
            ("wave_count", .int(Int64(rollout.waveCount))),
        ]
        if let reason = rollout.reason { members.append(("reason", .string(reason))) }
        members.append(("at_ms", .int(atMs)))
        return Array(JSONValue.object(members).serialized.utf8)
    }

    // MARK: Device evidence

    /// What `/ota/check` answers a device in a rollout. Reads only.
    public func offer(deviceID: String, runningVersion: String) async throws -> Offer {
        guard let (rollout, device) = try await store.openRolloutEntry(deviceID: deviceID) else {
            return try await fleetWideOffer(deviceID: deviceID, runningVersion: runningVersion)
        }
        switch device.state {
        case .healthy: return .withheld("rollout \(rollout.id): done on this device")
        case .failed: return .withheld("rollout \(rollout.id): failed on this device (\(device.reason ?? "failed")); an operator can retry")
        case .installed: return .withheld("rollout \(rollout.id): installed, confirming health")
        case .pending, .offered, .downloading: break
        }
        guard rollout.status == .active else { return .withheld("rollout \(rollout.id) is \(rollout.status.rawValue)") }
        guard device.wave <= rollout.currentWave else {
            return .withheld("rollout \(rollout.id): wave \(device.wave + 1) of \(rollout.waveCount) is not open yet")
        }
        guard runningVersion != rollout.version else { return .withheld("already running \(rollout.version)") }
        if device.state != .downloading, let pacing = pacingRefusal(rollout, downloading: try await downloading(rollout)) {
            return .withheld("rollout \(rollout.id): \(pacing)")
        }
        return .offer(version: rollout.version)
    }

    /// "Starting firmware download..." from the device's address before its initiate: it took the offer. A device
    /// that stays `offered` never initiated: its local checks failed (no OTA partition, the image too large for it).
    public func accepted(deviceID: String) async {
        await update(deviceID) { rollout, device, now in
            guard device.state == .pending, rollout.status == .active, device.wave <= rollout.currentWave else { return false }
            device.state = .offered
            device.offeredAtMs = now
            return true
        }
    }

    /// The boot report after a session of the rollout's version ended with `outcome`. A failed download or
    /// verification is retried (the device is offered the image again) until it failed ``RolloutSettings/maxAttempts``
    /// times; a rollback or another running version fails the device at once.
    public func sessionEnded(deviceID: String, version: String, outcome: OTAOutcome, reason: String) async {
        var failedAttempts = 1
        if outcome == .failed, let (rollout, _) = try? await store.openRolloutEntry(deviceID: deviceID), rollout.settings.maxAttempts > 1 {
            failedAttempts = (try? await store.attempts(deviceID: deviceID, version: version, sinceMs: rollout.createdAtMs).failed) ?? 1
        }
        await update(deviceID) { rollout, device, now in
            guard rollout.version == version, device.state == .downloading || device.state == .offered || device.state == .pending else {
                return false
            }
            if outcome == .failed, failedAttempts < rollout.settings.maxAttempts {
                device.state = .pending
                device.reason = "attempt \(failedAttempts) of \(rollout.settings.maxAttempts) failed (\(reason))"
                device.startedAtMs = nil
                return true
            }
            switch outcome {
            case .success:
                device.state = .installed
                device.installedAtMs = now
                device.healthyUploads = 0
            case .failed, .rolledBack, .versionMismatch:
                device.state = .failed
                device.reason = reason
                device.finishedAtMs = now
            case .replaced, .cancelled, .expired:
                return false
            }
            return true
        }
    }

    /// A boot report without a session, from the device's address: a reboot. Before the device proved healthy, a
    /// reboot fails it (a boot loop or a crash on the new image), and so does a different running version. A device
    /// that has not installed the image in this rollout but boots running it (its boot report after the install was
    /// lost, or it got the version otherwise) is installed: health decides from there.
    public func booted(deviceID: String, runningVersion: String) async {
        await update(deviceID) { rollout, device, now in
            switch device.state {
            case .installed:
                device.state = .failed
                device.reason = runningVersion == rollout.version ? "rebooted_before_healthy" : "running_another_version"
                device.finishedAtMs = now
            case .pending, .offered, .downloading:
                guard runningVersion == rollout.version else { return false }
                device.state = .installed
                device.installedAtMs = now
                device.healthyUploads = 0
            case .healthy, .failed:
                return false
            }
            return true
        }
    }

    /// A signed upload that decoded: evidence of health for an installed device.
    public func uploaded(deviceID: String, decoded: Bool) async {
        guard decoded else { return }
        await update(deviceID) { rollout, device, now in
            guard device.state == .installed, let installedAt = device.installedAtMs else { return false }
            device.healthyUploads += 1
            let settings = rollout.settings
            if device.healthyUploads >= settings.healthUploads || now - installedAt >= Int64(settings.healthMinutes) * 60_000 {
                device.state = .healthy
                device.finishedAtMs = now
            }
            return true
        }
    }

    /// Applies `change` to the device's entry in its open rollout and stores it when it says so; returns the entry
    /// stored. The write is a compare-and-swap: when another writer (another instance, the evaluator) changed the
    /// entry since it was read, it is read again and `change` applied anew (at most 4 times).
    @discardableResult
    func update(
        _ deviceID: String,
        _ change: (RolloutRecord, inout RolloutDeviceRecord, Int64) -> Bool
    ) async -> RolloutDeviceRecord? {
        do {
            for _ in 0..<4 {
                guard let entry = try await store.openRolloutEntry(deviceID: deviceID) else { return nil }
                let rollout = entry.rollout
                var device = entry.device
                let now = clock()
                guard change(rollout, &device, now) else { return nil }
                device.updatedAtMs = now
                guard try await store.updateRolloutDevice(device, from: entry.device) else {
                    metrics?.increment("ecowatt_rollout_write_conflicts_total")
                    continue
                }
                await stored(device, previously: entry.device.state)
                if device.state.finished {
                    logger.info(
                        "rollout device finished",
                        metadata: ["rollout": "\(rollout.id)", "device_id": LogText.value(deviceID), "state": "\(device.state.rawValue)"]
                    )
                }
                return device
            }
            logger.warning("rollout state not stored: it kept changing", metadata: ["device_id": LogText.value(deviceID)])
        } catch {
            logger.warning("rollout state not stored", metadata: ["device_id": LogText.value(deviceID), "error": "\(error.logDescription)"])
        }
        return nil
    }

    /// After a device's entry was stored: whether it awaits health evidence (here, and announced to the other
    /// instances when that changed), and the count of finished devices.
    func stored(_ device: RolloutDeviceRecord, previously: RolloutDeviceState) async {
        let installed = device.state == .installed
        awaitingHealth.withLock { awaiting in
            if installed { awaiting.insert(device.deviceID) } else { awaiting.remove(device.deviceID) }
        }
        if installed != (previously == .installed) { await notices.announce(.rollout, device.deviceID) }
        if device.state.finished {
            metrics?.increment("ecowatt_rollout_devices_finished_total", [("state", device.state.rawValue)])
        }
    }
}
