import EcoWattProtocol
import Foundation

/// Durable OTA state (spec §7): sessions that survive a restart mid-download, and progress events; and the table of
/// deployments from before deployments were one-wave rollouts (``RolloutStore``), read once at start to adopt them.
public protocol OTAStore: Sendable {
    /// Stores a deployment in the table of before (tests of the adoption make one).
    func createDeployment(_ deployment: OTADeployment) async throws -> OTADeployment
    /// Deployments of that table, newest first, of `status` when it is given, with an id below `before` when it is given.
    func deployments(status: String?, before: Int64?, limit: Int) async throws -> [OTADeployment]
    /// Marks a deployment of that table cancelled (adopted); `nil` when unknown.
    func cancelDeployment(id: Int64, nowMs: Int64) async throws -> OTADeployment?
    /// Failed sessions of the device for `version` started at or after `sinceMs`, and whether it ever installed that
    /// version but reported another one.
    func attempts(deviceID: String, version: String, sinceMs: Int64) async throws -> (failed: Int, versionMismatch: Bool)
    /// Ends the device's active sessions as `replaced` and stores `session` (taking over the device's progress events
    /// of the last two minutes that had no session); returns the replaced session ids.
    func startSession(_ session: OTASession) async throws -> [String]
    /// Every active session (read at start).
    func activeSessions() async throws -> [OTASession]
    /// Stores a progress event and the session's new phase; ends the session when `outcome` is given.
    func recordProgress(_ event: OTAEvent, outcome: OTAOutcome?) async throws
    /// Adds the chunks and bytes served since the last save to several sessions (several instances serve one
    /// session's chunks); the last chunk and its time replace the stored ones.
    func saveCounters(_ counters: [String: OTAChunkCounters]) async throws
    /// Ends an active session; `false` when it was not active.
    func endSession(
        _ sessionID: String,
        outcome: OTAOutcome,
        message: String?,
        reportedVersion: String?,
        reportedStatus: String?,
        nowMs: Int64
    ) async throws -> Bool
    func session(_ sessionID: String) async throws -> OTASession?
    /// Sessions of a device, newest first (by start, then by ``OTASession/sequence``), with `outcome` when it is given
    /// (`active`: none yet), after `before` in that order when it is given.
    func sessions(deviceID: String, outcome: String?, before: OTASessionCursor?, limit: Int) async throws -> [OTASession]
    /// Events of a session, oldest first.
    func events(sessionID: String, limit: Int) async throws -> [OTAEvent]
    func otaCounts() async throws -> OTACounts
    /// Records the firmware version a known device reports running (no write when it is unchanged or unknown).
    func setFirmwareVersion(deviceID: String, version: String) async throws
    /// Ends active sessions last updated before `idleBeforeMs` as `expired`; returns their ids and devices.
    func expireSessions(idleBeforeMs: Int64, nowMs: Int64) async throws -> [(sessionID: String, deviceID: String)]
}

/// Where a listing of sessions continues: the last session of the previous page.
public struct OTASessionCursor: Sendable, Equatable {
    public var startedAtMs: Int64
    public var sequence: Int64

    public init(startedAtMs: Int64, sequence: Int64) {
        self.startedAtMs = startedAtMs
        self.sequence = sequence
    }

    public init(_ session: OTASession) {
        self.init(startedAtMs: session.startedAtMs, sequence: session.sequence)
    }
}

extension OTAStore {
    /// Deployments, newest first.
    public func deployments(limit: Int) async throws -> [OTADeployment] {
        try await deployments(status: nil, before: nil, limit: limit)
    }

    /// Sessions of a device, newest first.
    public func sessions(deviceID: String, limit: Int) async throws -> [OTASession] {
        try await sessions(deviceID: deviceID, outcome: nil, before: nil, limit: limit)
    }
}
