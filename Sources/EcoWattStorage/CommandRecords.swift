import Foundation

/// Lifecycle of an operator command (spec §4.4).
public enum CommandStatus: String, Sendable, Codable, CaseIterable {
    /// Queued, waiting for the device's next poll.
    case pending
    /// Delivered as the one command of a poll; never re-delivered automatically.
    case dispatched
    /// The device reported success.
    case completed
    /// The device reported failure.
    case failed
    /// Dispatched, but no result arrived within the result timeout.
    case timedOut = "timed_out"
    /// Cancelled by an operator while pending.
    case cancelled
    /// Its `expires_at` passed while pending.
    case expired
}

/// A stored command.
public struct CommandRow: Sendable, Equatable {
    /// Increases with every queued command (the order of the queue and the listing's cursor).
    public var sequence: Int64 = 0
    public var commandID: String
    public var deviceID: String
    public var action: String
    public var targetRegister: String?
    public var registerAddress: Int?
    public var value: Int?
    public var status: CommandStatus
    public var idempotencyKey: String?
    public var createdAtMs: Int64
    public var expiresAtMs: Int64?
    public var dispatchedAtMs: Int64?
    public var finishedAtMs: Int64?
    public var resultStatus: String?
    public var executedAt: String?
    public var resultJSON: String?
    public var errorMessage: String?

    public init(
        commandID: String,
        deviceID: String,
        action: String,
        targetRegister: String?,
        registerAddress: Int?,
        value: Int?,
        status: CommandStatus,
        idempotencyKey: String?,
        createdAtMs: Int64,
        expiresAtMs: Int64?,
        dispatchedAtMs: Int64?,
        finishedAtMs: Int64?,
        resultStatus: String?,
        executedAt: String?,
        resultJSON: String?,
        errorMessage: String?
    ) {
        self.commandID = commandID
        self.deviceID = deviceID
        self.action = action
        self.targetRegister = targetRegister
        self.registerAddress = registerAddress
        self.value = value
        self.status = status
        self.idempotencyKey = idempotencyKey
        self.createdAtMs = createdAtMs
        self.expiresAtMs = expiresAtMs
        self.dispatchedAtMs = dispatchedAtMs
        self.finishedAtMs = finishedAtMs
        self.resultStatus = resultStatus
        self.executedAt = executedAt
        self.resultJSON = resultJSON
        self.errorMessage = errorMessage
    }
}

/// A device's report of how a command went.
public struct CommandResult: Sendable, Equatable {
    public var commandID: String
    public var succeeded: Bool
    /// `executed_at` as the device sent it (ISO-8601 UTC; `1970-…` when its clock was unsynced).
    public var executedAt: String?
    /// Extra result data, compact JSON.
    public var resultJSON: String?
    public var errorMessage: String?

    public init(commandID: String, succeeded: Bool, executedAt: String?, resultJSON: String?, errorMessage: String?) {
        self.commandID = commandID
        self.succeeded = succeeded
        self.executedAt = executedAt
        self.resultJSON = resultJSON
        self.errorMessage = errorMessage
    }
}

/// Why a command operation was refused.
public enum CommandStoreError: Error, Sendable, Equatable {
    case notFound(String)
    /// The command is not in a state that allows the operation.
    case wrongState(commandID: String, status: CommandStatus)
    /// The device already has the maximum number of pending commands.
    case queueFull(deviceID: String, limit: Int)
}

/// A registered device.
public struct DeviceRow: Sendable, Equatable {
    public var deviceID: String
    public var deviceName: String?
    public var location: String?
    public var description: String?
    public var firmwareVersion: String?
    public var registeredAtMs: Int64?
    public var firstSeenMs: Int64
    public var lastSeenMs: Int64
    public var uploadCount: Int
    /// `pending` (no verified upload, not created by an operator), `verified` or `operator`.
    public var admission: String
    /// The address of the last verified upload, which binds the device's unsigned requests, and when.
    public var boundAddress: String?
    public var boundAtMs: Int64?
    /// Uploads refused for a nonce too far ahead, and the last such nonce.
    public var nonceJumpsRefused: Int
    public var lastRefusedNonce: Int64?
    /// Uploads refused because the device was not admitted (`device_admission = known`).
    public var refusedUploads: Int

    public init(
        deviceID: String,
        deviceName: String?,
        location: String?,
        description: String?,
        firmwareVersion: String?,
        registeredAtMs: Int64?,
        firstSeenMs: Int64,
        lastSeenMs: Int64,
        uploadCount: Int,
        admission: String,
        boundAddress: String?,
        boundAtMs: Int64?,
        nonceJumpsRefused: Int,
        lastRefusedNonce: Int64?,
        refusedUploads: Int = 0
    ) {
        self.deviceID = deviceID
        self.deviceName = deviceName
        self.location = location
        self.description = description
        self.firmwareVersion = firmwareVersion
        self.registeredAtMs = registeredAtMs
        self.firstSeenMs = firstSeenMs
        self.lastSeenMs = lastSeenMs
        self.uploadCount = uploadCount
        self.admission = admission
        self.boundAddress = boundAddress
        self.boundAtMs = boundAtMs
        self.nonceJumpsRefused = nonceJumpsRefused
        self.lastRefusedNonce = lastRefusedNonce
        self.refusedUploads = refusedUploads
    }
}

/// Device fields a registration or an operator edit may set (`nil` leaves a field unchanged).
public struct DeviceFields: Sendable, Equatable {
    public var deviceName: String?
    public var location: String?
    public var description: String?
    public var firmwareVersion: String?

    public init(deviceName: String? = nil, location: String? = nil, description: String? = nil, firmwareVersion: String? = nil) {
        self.deviceName = deviceName
        self.location = location
        self.description = description
        self.firmwareVersion = firmwareVersion
    }
}
