import EcoWattStorage
import FirmwareImage
import Foundation

/// Operator requests: cancel a download, prepare, delete and deploy firmware.
extension OTAService {

    /// Ends the device's active session as cancelled: its next chunk request fails and the device retries at its next
    /// OTA period if the deployment still targets it.
    public func cancel(deviceID: String, reason: String = "cancelled by operator") async throws -> OTASession {
        await takeUpStoredSession(deviceID)
        guard let current = live.withLock({ $0[deviceID] }) else { throw OTAError.noActiveSession(deviceID) }
        await saveCounters(of: deviceID)
        _ = try await store.endSession(
            current.sessionID,
            outcome: .cancelled,
            message: reason,
            reportedVersion: nil,
            reportedStatus: nil,
            nowMs: clock()
        )
        forgetLive(deviceID: deviceID, sessionID: current.sessionID)
        await notices.announce(.ota, deviceID)
        observer.changed(deviceID)
        guard let session = try await store.session(current.sessionID) else { throw OTAError.noActiveSession(deviceID) }
        return session
    }

    /// Sessions in progress with their live counters, the most recently active first, at most `limit`.
    public func activeSessions(limit: Int) async throws -> [OTASession] {
        let newest = live.withLock { sessions in
            sessions.sorted { $0.value.counters.updatedAtMs > $1.value.counters.updatedAtMs }.prefix(limit).map(\.value.sessionID)
        }
        var sessions: [OTASession] = []
        for id in newest {
            if let session = try await store.session(id) { sessions.append(withLiveCounters(session)) }
        }
        return sessions
    }

    /// Prepares an uploaded image with the server's keys and stores it.
    public func upload(image: [UInt8], version: String, description: String?) async throws -> ServableFirmware {
        guard let keys else { throw OTAError.keysUnavailable(keysError ?? "no keys") }
        let prepared = try FirmwarePreparer.prepare(image: image, version: version, description: description, keys: keys)
        let servable = try await catalog.add(prepared)
        await notices.announce(.firmware, version)
        logger.notice(
            "firmware prepared",
            metadata: ["version": "\(version)", "bytes": "\(image.count)", "chunks": "\(prepared.manifest.totalChunks)"]
        )
        return servable
    }

    /// Deletes every file of a version; refused while a rollout or deployment of it is open. Sessions downloading it are
    /// cancelled.
    public func deleteFirmware(_ version: String) async throws -> [String] {
        let open = try await rollouts.openRolloutIDs(version: version)
        guard open.isEmpty else {
            throw OTAError.conflict(
                "Version \(version) is deployed (open rollout or deployment \(open.map(String.init).joined(separator: ", "))): cancel it first"
            )
        }
        let removed = try await catalog.delete(version)
        await notices.announce(.firmware, version)
        let downloading = live.withLock { $0.filter { $0.value.version == version }.map(\.key) }
        for deviceID in downloading { _ = try? await cancel(deviceID: deviceID, reason: "firmware \(version) deleted") }
        logger.notice("firmware deleted", metadata: ["version": "\(version)", "files": "\(removed.count)"])
        return removed
    }

    /// Assigns a version to every device (`deviceIDs == nil`) or to a list: a one-wave rollout of kind `deployment`
    /// (see ``RolloutService/deploy(version:deviceIDs:maxAttempts:notes:createdBy:)``). The image must exist and, when
    /// the server has keys, verify with them (an image the devices will reject is not deployed).
    public func deploy(
        version: String,
        deviceIDs: [String]?,
        maxAttempts: Int,
        notes: String?,
        createdBy: String
    ) async throws
        -> OTADeployment
    {
        guard let firmware = try await catalog.firmware(version) else { throw OTAError.noFirmware(version) }
        if firmware.signatureVerified == false {
            throw OTAError.conflict(
                "The signature of \(version) does not verify with the server's current FOTA keys (public key "
                    + "\(keyRing.fingerprint ?? "none")): it was prepared with other keys, and devices built with the current "
                    + "public key would reject it. Prepare the image again (POST /ota/upload or `ecowatt firmware prepare`), "
                    + "or restore the keys it was prepared with from the keys directory's archive/ and send the server SIGHUP."
            )
        }
        let rollout = try await rollouts.deploy(
            version: version,
            deviceIDs: deviceIDs,
            maxAttempts: maxAttempts,
            notes: notes,
            createdBy: createdBy
        )
        let deployment = try await rollouts.deploymentView(rollout)
        logger.notice(
            "firmware deployed",
            metadata: [
                "version": "\(version)", "deployment": "\(deployment.id)",
                "devices": "\(deviceIDs.map { "\($0.count)" } ?? "all")",
            ]
        )
        return deployment
    }

    /// Fleet figures with the chunk counters flushed first.
    public func counts() async throws -> OTACounts {
        await flush()
        var counts = try await store.otaCounts()
        (counts.activeDeployments, counts.deployments) = try await rollouts.deploymentCounts()
        return counts
    }

    /// The device's sessions, newest first, an active one with its live chunk counters.
    public func sessions(
        deviceID: String,
        outcome: String? = nil,
        before: OTASessionCursor? = nil,
        limit: Int
    ) async throws -> [OTASession] {
        try await store.sessions(deviceID: deviceID, outcome: outcome, before: before, limit: limit).map(withLiveCounters)
    }

    /// Whether the device has a download in progress.
    public func isUpdating(_ deviceID: String) -> Bool {
        live.withLock { $0[deviceID] != nil }
    }

    /// A session's progress events, oldest first.
    public func events(sessionID: String, limit: Int) async throws -> [OTAEvent] {
        try await store.events(sessionID: sessionID, limit: limit)
    }
}
