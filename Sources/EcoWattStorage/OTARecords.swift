/// How an OTA session ended.
public enum OTAOutcome: String, Sendable, CaseIterable {
    /// The device booted the target version.
    case success
    /// The download or the verification failed, or the device rebooted before installing.
    case failed
    /// A later `initiate` of the same device took over.
    case replaced
    /// An operator cancelled it.
    case cancelled
    /// The device rebooted into its previous image after installing.
    case rolledBack = "rolled_back"
    /// The device installed the image and reports success, but runs another version than the catalog says: the image's
    /// compiled-in version differs. Not offered again to that device (it would loop forever).
    case versionMismatch = "version_mismatch"
    /// No chunk and no progress for longer than the idle limit (the device gave up, or the id was made up): not a failed
    /// attempt.
    case expired
}

/// An operator's assignment of a firmware version to all devices or a list of them: the API's view of a one-wave
/// rollout of kind `deployment`, and the row of the table deployments had before they were rollouts.
public struct OTADeployment: Sendable, Equatable {
    public var id: Int64
    public var version: String
    /// `nil` for every device.
    public var deviceIDs: [String]?
    /// `active` or `cancelled`.
    public var status: String
    /// Failed sessions of one device after which the version is no longer offered to it.
    public var maxAttempts: Int
    public var notes: String?
    public var createdAtMs: Int64
    public var cancelledAtMs: Int64?

    public init(
        id: Int64 = 0,
        version: String,
        deviceIDs: [String]?,
        status: String = "active",
        maxAttempts: Int,
        notes: String?,
        createdAtMs: Int64,
        cancelledAtMs: Int64? = nil
    ) {
        self.id = id
        self.version = version
        self.deviceIDs = deviceIDs
        self.status = status
        self.maxAttempts = maxAttempts
        self.notes = notes
        self.createdAtMs = createdAtMs
        self.cancelledAtMs = cancelledAtMs
    }
}

/// One download attempt of a device, from `initiate` to its outcome.
public struct OTASession: Sendable, Equatable {
    /// Increases with every session started (the tie-break of sessions started in the same millisecond, and the
    /// listing's cursor); 0 until stored.
    public var sequence: Int64 = 0
    public var sessionID: String
    public var deviceID: String
    public var version: String
    public var deploymentID: Int64?
    /// The version the device ran when it was offered the update.
    public var fromVersion: String?
    public var totalChunks: Int
    public var chunksServed: Int = 0
    public var bytesServed: Int64 = 0
    public var lastChunk: Int?
    /// The last phase: `initiated`, then the device's progress phases.
    public var phase: String
    public var progress: Int = 0
    public var startedAtMs: Int64
    public var updatedAtMs: Int64
    public var endedAtMs: Int64?
    /// `nil` while the session is active.
    public var outcome: OTAOutcome?
    public var message: String?
    /// What `POST /ota/{id}/complete` reported.
    public var reportedVersion: String?
    public var reportedStatus: String?

    public init(
        sessionID: String,
        deviceID: String,
        version: String,
        deploymentID: Int64?,
        fromVersion: String?,
        totalChunks: Int,
        startedAtMs: Int64
    ) {
        self.sessionID = sessionID
        self.deviceID = deviceID
        self.version = version
        self.deploymentID = deploymentID
        self.fromVersion = fromVersion
        self.totalChunks = totalChunks
        self.phase = "initiated"
        self.startedAtMs = startedAtMs
        self.updatedAtMs = startedAtMs
    }

    public init(
        sessionID: String,
        deviceID: String,
        version: String,
        deploymentID: Int64?,
        fromVersion: String?,
        totalChunks: Int,
        chunksServed: Int,
        bytesServed: Int64,
        lastChunk: Int?,
        phase: String,
        progress: Int,
        startedAtMs: Int64,
        updatedAtMs: Int64,
        endedAtMs: Int64?,
        outcome: OTAOutcome?,
        message: String?,
        reportedVersion: String?,
        reportedStatus: String?
    ) {
        self.sessionID = sessionID
        self.deviceID = deviceID
        self.version = version
        self.deploymentID = deploymentID
        self.fromVersion = fromVersion
        self.totalChunks = totalChunks
        self.chunksServed = chunksServed
        self.bytesServed = bytesServed
        self.lastChunk = lastChunk
        self.phase = phase
        self.progress = progress
        self.startedAtMs = startedAtMs
        self.updatedAtMs = updatedAtMs
        self.endedAtMs = endedAtMs
        self.outcome = outcome
        self.message = message
        self.reportedVersion = reportedVersion
        self.reportedStatus = reportedStatus
    }
}

/// A progress report of a device (spec §7.5).
public struct OTAEvent: Sendable, Equatable {
    public var sessionID: String?
    public var deviceID: String
    public var phase: String
    public var progress: Int?
    public var message: String?
    public var deviceTimeS: Int64?
    public var receivedAtMs: Int64
    /// The device sent a time outside the plausible range (not stored).
    public var deviceTimeInvalid = false

    public init(
        sessionID: String?,
        deviceID: String,
        phase: String,
        progress: Int?,
        message: String?,
        deviceTimeS: Int64?,
        receivedAtMs: Int64
    ) {
        self.sessionID = sessionID
        self.deviceID = deviceID
        self.phase = phase
        self.progress = progress
        self.message = message
        self.deviceTimeS = deviceTimeS
        self.receivedAtMs = receivedAtMs
    }
}

/// Chunk counters of one session, kept in memory on the hot path and written in batches.
public struct OTAChunkCounters: Sendable, Equatable {
    public var chunksServed: Int
    public var bytesServed: Int64
    public var lastChunk: Int?
    public var updatedAtMs: Int64

    public init(chunksServed: Int, bytesServed: Int64, lastChunk: Int?, updatedAtMs: Int64) {
        self.chunksServed = chunksServed
        self.bytesServed = bytesServed
        self.lastChunk = lastChunk
        self.updatedAtMs = updatedAtMs
    }
}

/// Fleet-wide OTA figures.
public struct OTACounts: Sendable, Equatable {
    public var sessionsByOutcome: [String: Int] = [:]
    public var activeSessions = 0
    public var chunksServed: Int64 = 0
    public var bytesServed: Int64 = 0
    /// Open deployments and all of them (one-wave rollouts: the server counts them from ``RolloutStore``; the store
    /// leaves them 0).
    public var activeDeployments = 0
    public var deployments = 0

    public init() {}
}
