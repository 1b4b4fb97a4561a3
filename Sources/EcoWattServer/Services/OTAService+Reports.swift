import EcoWattProtocol
import EcoWattStorage
import FirmwareImage
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// What devices report about their downloads (spec §7.1 steps 2-10): progress phases and the boot report that judges
/// the session.
extension OTAService {
    /// `POST /ota/{id}/progress`: records the phase; `failed` and `verification_failed` end the session.
    /// - Returns: the id of the session the report was recorded against, `nil` when the device has none yet. (Not the
    ///   session row: reading it back after every report cost a database read per request, ~9 % of the CPU of a
    ///   progress report in `perf`, for an id the caller already had.)
    public func progress(
        deviceID: String,
        phase: String,
        progress: Int?,
        message: String?,
        deviceTime: (value: Int64?, invalid: Bool)
    ) async throws
        -> String?
    {
        await takeUpStoredSession(deviceID)
        var current = live.withLock { $0[deviceID] }
        // "Starting firmware download..." opens every attempt (spec §7.1 step 2). A session still open then, that had
        // served chunks, was abandoned without a report (a chunk that failed to decrypt, a silent local failure): it
        // failed, and this event belongs to the new attempt. (One that never served a chunk is replaced by the next
        // initiate, and not counted as a failed attempt.)
        if let open = current, open.counters.chunksServed > 0, phase == "downloading",
            message?.hasPrefix(Self.attemptStartMessage) == true
        {
            await saveCounters(of: deviceID)
            _ = try await store.endSession(
                open.sessionID,
                outcome: .failed,
                message: "abandoned: the device started a new download without reporting the end of this one",
                reportedVersion: nil,
                reportedStatus: nil,
                nowMs: clock()
            )
            forgetLive(deviceID: deviceID, sessionID: open.sessionID)
            await notices.announce(.ota, deviceID)
            observer.failed(deviceID, "abandoned")
            await rollouts.sessionEnded(deviceID: deviceID, version: open.version, outcome: .failed, reason: "abandoned")
            deviceEvents?.log(
                level: .notice,
                kind: "ota_failed",
                "OTA session abandoned",
                metadata: ["device_id": LogText.value(deviceID), "session_id": "\(open.sessionID)"]
            )
            current = nil
        }
        // Without a session (the firmware reports "Starting firmware download..." before it initiates, spec §7.1
        // step 2) the event is kept and attached to the session the next initiate starts. That report, from the
        // device's address, says it took the offer: a device that stays `offered` failed its local checks (step 3).
        if current == nil, phase == "downloading", message?.hasPrefix(Self.attemptStartMessage) == true {
            await rollouts.accepted(deviceID: deviceID)
        }
        let outcome: OTAOutcome? =
            current != nil && (phase == "failed" || phase == "verification_failed") ? .failed : nil
        if outcome != nil { await saveCounters(of: deviceID) }
        var event = OTAEvent(
            sessionID: current?.sessionID,
            deviceID: deviceID,
            phase: phase,
            progress: progress,
            message: message,
            deviceTimeS: deviceTime.value,
            receivedAtMs: clock()
        )
        event.deviceTimeInvalid = deviceTime.invalid
        try await store.recordProgress(event, outcome: outcome)
        observer.changed(deviceID)
        guard let current else { return nil }
        if outcome != nil {
            forgetLive(deviceID: deviceID, sessionID: current.sessionID)
            await notices.announce(.ota, deviceID)
            observer.failed(deviceID, phase)
            await rollouts.sessionEnded(deviceID: deviceID, version: current.version, outcome: .failed, reason: phase)
            deviceEvents?.log(
                level: .notice,
                kind: "ota_failed",
                "OTA session failed",
                metadata: ["device_id": LogText.value(deviceID), "phase": "\(phase)", "message": LogText.value(message ?? "")]
            )
        }
        return current.sessionID
    }

    /// `POST /ota/{id}/complete`, sent on every boot: judged by the running version against the session's target, and
    /// idempotent (without an active session it only records the running version).
    public func complete(
        deviceID: String,
        version: String,
        status: String,
        error: String?
    ) async throws
        -> (outcome: OTAOutcome?, session: OTASession?)
    {
        try await store.setFirmwareVersion(deviceID: deviceID, version: version)
        await takeUpStoredSession(deviceID)
        guard let current = live.withLock({ $0[deviceID] }) else {
            await rollouts.booted(deviceID: deviceID, runningVersion: version)
            return (nil, nil)
        }
        guard let session = try await store.session(current.sessionID) else { return (nil, nil) }
        let installed = ["installing", "verification_success"].contains(session.phase)
        let outcome: OTAOutcome
        let message: String
        let running = status == "success" || status == "pending_verify"
        if running, version == session.version {
            outcome = .success
            message = "running \(version)"
        } else if status == "rolled_back" {
            outcome = .rolledBack
            message = error ?? "firmware validation failed, rolled back"
        } else if running, installed {
            outcome = .versionMismatch
            message = "installed \(session.version) but the device reports \(version): the image's compiled-in version differs"
        } else {
            outcome = .failed
            message = "device rebooted in phase \(session.phase) running \(version) (\(status))" + (error.map { ": \($0)" } ?? "")
        }
        await saveCounters(of: deviceID)
        _ = try await store.endSession(
            session.sessionID,
            outcome: outcome,
            message: message,
            reportedVersion: version,
            reportedStatus: status,
            nowMs: clock()
        )
        forgetLive(deviceID: deviceID, sessionID: session.sessionID)
        await notices.announce(.ota, deviceID)
        if outcome == .success { observer.changed(deviceID) } else { observer.failed(deviceID, outcome.rawValue) }
        await rollouts.sessionEnded(deviceID: deviceID, version: session.version, outcome: outcome, reason: outcome.rawValue)
        deviceEvents?.log(
            level: .notice,
            kind: "ota_ended",
            "OTA session ended",
            metadata: ["device_id": LogText.value(deviceID), "outcome": "\(outcome.rawValue)", "version": LogText.value(version)]
        )
        return (outcome, try await store.session(session.sessionID))
    }
}
