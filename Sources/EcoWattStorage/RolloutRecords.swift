/// Staged firmware rollouts (issue 21): an image offered to a fixed list of devices in waves, judged by the devices'
/// health after they install it.
public enum RolloutStatus: String, Sendable, CaseIterable, Codable {
    /// Offering to the open waves, deciding as evidence arrives.
    case active
    /// Stopped by an operator: no new offers, devices in flight finish; resumable.
    case paused
    /// Stopped by the rules (the reason is kept): like paused, until an operator resumes or cancels it.
    case halted
    /// Ended by an operator for good.
    case cancelled
    /// Every wave finished at the success ratio.
    case completed

    /// Whether the rollout still owns its devices (a device is in at most one open rollout).
    public var isOpen: Bool { self == .active || self == .paused || self == .halted }
}

/// Where a targeted device stands in a rollout.
public enum RolloutDeviceState: String, Sendable, CaseIterable, Codable {
    /// Not offered yet: its wave has not opened, pacing holds it, or it has not checked since.
    case pending
    /// Offered at its last check; it has not started a download.
    case offered
    /// Started (`initiate`), no boot report yet.
    case downloading
    /// Reported `complete` with the new version; success waits for healthy uploads on it.
    case installed
    /// Installed and then uploaded decoded telemetry on the new version long enough: a success.
    case healthy
    /// Failed (the reason is kept beside it).
    case failed

    /// Started a download: counts toward the wave's evidence.
    public var started: Bool { self == .downloading || self == .installed || self == .healthy || self == .failed }
    public var finished: Bool { self == .healthy || self == .failed }
}

/// A rollout's rules. Defaults: waves 1 → 10 → 50 → 100 %, a wave advances at 95 % healthy, the rollout halts at 10 %
/// failed after 5 finished; success is 3 decoded uploads or 15 minutes on the new version without a reboot.
public struct RolloutSettings: Sendable, Equatable, Codable {
    public var wavePercents = [1, 10, 50, 100]
    public var minDevicesPerWave = 1
    public var successPercent = 95
    public var haltFailurePercent = 10
    public var minFinished = 5
    public var haltFailureCount: Int?
    /// Healthy after this many decoded uploads on the new version...
    public var healthUploads = 3
    /// ...or after this long on it with at least one, whichever comes first; a reboot in between is a failure.
    public var healthMinutes = 15
    /// A download without a chunk or a report for this long failed.
    public var downloadTimeoutMinutes = 30
    /// An installed device without a decoded upload on the new version for this long failed (silent after install).
    public var healthTimeoutMinutes = 30
    /// A wave open this long ends: its devices still in flight count as failed (`nil`: no limit).
    public var waveTimeoutMinutes: Int?
    /// A wave opens at least this long after the previous one.
    public var waveDelayMinutes = 0
    /// Downloads in progress at once at most.
    public var maxConcurrentDownloads = 50
    /// New downloads started per minute at most.
    public var maxNewDownloadsPerMinute = 60
    /// A staged rollout, or a deployment (one wave, made by `POST /api/v1/deployments`): a deployment is never
    /// completed by the rules (it stays active, as deployments always did, until cancelled or replaced), and it gives
    /// its devices up to any newer rollout or deployment that targets them.
    public var kind = RolloutKind.staged
    /// Devices that were not in any open rollout when it was created (registered later) join it when they start a
    /// download of its version: a deployment to every device.
    public var followsFleet = false
    /// A device whose download or verification failed is offered the image again until it failed this many times.
    public var maxAttempts = 1

    public init() {}
}

/// Where a rollout came from.
public enum RolloutKind: String, Sendable, Codable, CaseIterable {
    case staged
    case deployment
}

extension RolloutSettings {
    /// Decodes what a stored rollout has; fields added since it was stored take their defaults.
    public init(from decoder: any Decoder) throws {
        let stored = try decoder.container(keyedBy: CodingKeys.self)
        func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            try stored.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        let defaults = RolloutSettings()
        self.init()
        wavePercents = try value(.wavePercents, defaults.wavePercents)
        minDevicesPerWave = try value(.minDevicesPerWave, defaults.minDevicesPerWave)
        successPercent = try value(.successPercent, defaults.successPercent)
        haltFailurePercent = try value(.haltFailurePercent, defaults.haltFailurePercent)
        minFinished = try value(.minFinished, defaults.minFinished)
        haltFailureCount = try stored.decodeIfPresent(Int.self, forKey: .haltFailureCount)
        healthUploads = try value(.healthUploads, defaults.healthUploads)
        healthMinutes = try value(.healthMinutes, defaults.healthMinutes)
        downloadTimeoutMinutes = try value(.downloadTimeoutMinutes, defaults.downloadTimeoutMinutes)
        healthTimeoutMinutes = try value(.healthTimeoutMinutes, defaults.healthTimeoutMinutes)
        waveTimeoutMinutes = try stored.decodeIfPresent(Int.self, forKey: .waveTimeoutMinutes)
        waveDelayMinutes = try value(.waveDelayMinutes, defaults.waveDelayMinutes)
        maxConcurrentDownloads = try value(.maxConcurrentDownloads, defaults.maxConcurrentDownloads)
        maxNewDownloadsPerMinute = try value(.maxNewDownloadsPerMinute, defaults.maxNewDownloadsPerMinute)
        kind = try value(.kind, defaults.kind)
        followsFleet = try value(.followsFleet, defaults.followsFleet)
        maxAttempts = try value(.maxAttempts, defaults.maxAttempts)
    }
}

public struct RolloutRecord: Sendable, Equatable {
    /// 0 until stored.
    public var id: Int64 = 0
    public var version: String
    public var status: RolloutStatus = .active
    public var settings: RolloutSettings
    /// Waves the devices were assigned to (the last holds every device).
    public var waveCount: Int
    /// Waves `0...currentWave` are open.
    public var currentWave = 0
    public var waveOpenedAtMs: Int64
    /// Why it halted (or was cancelled).
    public var reason: String?
    /// The failed and the finished devices when an operator last resumed it from a halt: the halt rules count from
    /// there, so that a resume is not undone by the failures it was given for (0 until a resume).
    public var failedBeforeResume = 0
    public var finishedBeforeResume = 0
    /// The rollout this one rolls back (its devices return to their previous version).
    public var rollbackOf: Int64?
    public var createdBy: String
    public var notes: String?
    public var createdAtMs: Int64
    public var updatedAtMs: Int64

    public init(
        version: String,
        settings: RolloutSettings,
        waveCount: Int,
        rollbackOf: Int64? = nil,
        createdBy: String,
        notes: String? = nil,
        nowMs: Int64
    ) {
        self.version = version
        self.settings = settings
        self.waveCount = waveCount
        self.rollbackOf = rollbackOf
        self.createdBy = createdBy
        self.notes = notes
        self.waveOpenedAtMs = nowMs
        self.createdAtMs = nowMs
        self.updatedAtMs = nowMs
    }
}

/// One device of a rollout, with its timeline.
public struct RolloutDeviceRecord: Sendable, Equatable {
    public var rolloutID: Int64
    public var deviceID: String
    public var wave: Int
    public var state: RolloutDeviceState = .pending
    /// Why it failed (a closed set: a phase or outcome, `download_timeout`, `silent_after_install`, `boot_loop`, …).
    public var reason: String?
    /// The version it ran when the rollout was created (a rollback returns it there).
    public var fromVersion: String?
    public var offeredAtMs: Int64?
    public var startedAtMs: Int64?
    public var installedAtMs: Int64?
    public var finishedAtMs: Int64?
    /// Decoded uploads on the new version since it installed.
    public var healthyUploads = 0
    public var updatedAtMs: Int64

    public init(rolloutID: Int64 = 0, deviceID: String, wave: Int, fromVersion: String?, nowMs: Int64) {
        self.rolloutID = rolloutID
        self.deviceID = deviceID
        self.wave = wave
        self.fromVersion = fromVersion
        self.updatedAtMs = nowMs
    }
}

/// Durable rollouts and their devices (issue 21).
public protocol RolloutStore: Sendable {
    /// Stores a new rollout and its devices; returns the rollout with its id. Throws
    /// ``RolloutStoreError/devicesInOpenRollout(rolloutID:deviceIDs:)`` when a device is in an open rollout already.
    func createRollout(_ rollout: RolloutRecord, devices: [RolloutDeviceRecord]) async throws -> RolloutRecord
    /// Adds devices to a rollout (one that follows the fleet), with the same refusal as ``createRollout(_:devices:)``.
    func addRolloutDevices(rolloutID: Int64, devices: [RolloutDeviceRecord]) async throws
    /// Takes devices out of a rollout (a deployment gives them up to a newer rollout); returns how many were in it.
    func releaseRolloutDevices(rolloutID: Int64, deviceIDs: [String]) async throws -> Int
    func rollout(id: Int64) async throws -> RolloutRecord?
    /// Rollouts newest first, of `status` when given, with an id below `before` when given.
    func rollouts(status: RolloutStatus?, before: Int64?, limit: Int) async throws -> [RolloutRecord]
    /// Replaces the rollout's changing fields (status, current wave and when it opened, reason, updated time) if they
    /// are still those of `previous` (what the caller read); `false` when someone changed them meanwhile (an operator,
    /// the evaluator of another server instance), and nothing is written.
    func updateRollout(_ rollout: RolloutRecord, from previous: RolloutRecord) async throws -> Bool
    /// A rollout's devices by device id after `after`, of `wave` and `state` when given.
    func rolloutDevices(
        rolloutID: Int64,
        wave: Int?,
        state: RolloutDeviceState?,
        after: String?,
        limit: Int
    ) async throws
        -> [RolloutDeviceRecord]
    /// Replaces a device's changing fields (state, reason, times, healthy uploads) if its state, reason, healthy
    /// uploads and updated time are still those of `previous`; `false` when another writer changed them meanwhile.
    func updateRolloutDevice(_ device: RolloutDeviceRecord, from previous: RolloutDeviceRecord) async throws -> Bool
    /// The device's entry in the newest open rollout (active, paused or halted), with the rollout.
    func openRolloutEntry(deviceID: String) async throws -> (rollout: RolloutRecord, device: RolloutDeviceRecord)?
    /// Devices per wave and state.
    func rolloutCounts(rolloutID: Int64) async throws -> [Int: [RolloutDeviceState: Int]]
}

extension RolloutStore {
    /// Every device of a rollout (of `state` when given), read in pages of 1 000.
    public func allRolloutDevices(rolloutID: Int64, state: RolloutDeviceState?) async throws -> [RolloutDeviceRecord] {
        var devices: [RolloutDeviceRecord] = []
        var after: String?
        while true {
            let page = try await rolloutDevices(rolloutID: rolloutID, wave: nil, state: state, after: after, limit: 1000)
            devices += page
            guard page.count == 1000, let last = page.last else { return devices }
            after = last.deviceID
        }
    }
}

public enum RolloutStoreError: Error, Equatable {
    /// Devices already in another open rollout.
    case devicesInOpenRollout(rolloutID: Int64, deviceIDs: [String])
}
