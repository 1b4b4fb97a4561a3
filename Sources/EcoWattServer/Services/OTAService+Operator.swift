import EcoWattStorage
import FirmwareImage
import Foundation

/// Operator requests: cancel a download, prepare, delete and deploy firmware.
extension OTAService {

    /// Ends the device's active session as cancelled: its next chunk request fails and the device retries at its next
    /// OTA period if the deployment still targets it.
    public func cancel(deviceID: String, reason: String = "cancelled by operator") async throws -> OTASession {
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
        guard let session = try await store.session(current.sessionID) else { throw OTAError.noActiveSession(deviceID) }
        return session
    }

    /// Prepares an uploaded image with the server's keys and stores it.
    public func upload(image: [UInt8], version: String, description: String?) throws -> ServableFirmware {
        guard let keys else { throw OTAError.keysUnavailable(keysError ?? "no keys") }
        let prepared = try FirmwarePreparer.prepare(image: image, version: version, description: description, keys: keys)
        let servable = try catalog.add(prepared)
        logger.notice(
            "firmware prepared",
            metadata: ["version": "\(version)", "bytes": "\(image.count)", "chunks": "\(prepared.manifest.totalChunks)"]
        )
        return servable
    }

    /// Deletes every file of a version; refused while a deployment of it is active. Sessions downloading it are
    /// cancelled.
    public func deleteFirmware(_ version: String) async throws -> [String] {
        let deployments = try await store.activeDeploymentIDs(version: version)
        guard deployments.isEmpty else {
            throw OTAError.conflict(
                "Version \(version) is deployed (deployment \(deployments.map(String.init).joined(separator: ", "))): cancel it first"
            )
        }
        let removed = try catalog.delete(version)
        let downloading = live.withLock { $0.filter { $0.value.version == version }.map(\.key) }
        for deviceID in downloading { _ = try? await cancel(deviceID: deviceID, reason: "firmware \(version) deleted") }
        logger.notice("firmware deleted", metadata: ["version": "\(version)", "files": "\(removed.count)"])
        return removed
    }

    /// Assigns a version to every device (`deviceIDs == nil`) or to a list. The image must exist and, when the server
    /// has keys, verify with them (an image the devices will reject is not deployed).
    public func deploy(version: String, deviceIDs: [String]?, maxAttempts: Int, notes: String?) async throws -> OTADeployment {
        guard let firmware = try catalog.firmware(version) else { throw OTAError.noFirmware(version) }
        if firmware.signatureVerified == false {
            throw OTAError.conflict(
                "The signature of \(version) does not verify with the server's current FOTA keys (public key "
                    + "\(keyRing.fingerprint ?? "none")): it was prepared with other keys, and devices built with the current "
                    + "public key would reject it. Prepare the image again (POST /ota/upload or `ecowatt firmware prepare`), "
                    + "or restore the keys it was prepared with from the keys directory's archive/ and send the server SIGHUP."
            )
        }
        let deployment = try await store.createDeployment(
            OTADeployment(version: version, deviceIDs: deviceIDs, maxAttempts: maxAttempts, notes: notes, createdAtMs: clock())
        )
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
        return try await store.otaCounts()
    }

    /// Deployments, newest first (of `status`, below the id `before`, when given).
    public nonisolated func deployments(status: String? = nil, before: Int64? = nil, limit: Int) async throws -> [OTADeployment] {
        try await store.deployments(status: status, before: before, limit: limit)
    }

    public nonisolated func deployment(id: Int64) async throws -> OTADeployment? {
        try await store.deployment(id: id)
    }

    /// Cancels an active deployment (a cancelled one stays as it is); `nil` when there is no deployment `id`.
    public nonisolated func cancelDeployment(id: Int64) async throws -> OTADeployment? {
        try await store.cancelDeployment(id: id, nowMs: clock())
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
    public nonisolated func isUpdating(_ deviceID: String) -> Bool {
        live.withLock { $0[deviceID] != nil }
    }

    /// A session's progress events, oldest first.
    public nonisolated func events(sessionID: String, limit: Int) async throws -> [OTAEvent] {
        try await store.events(sessionID: sessionID, limit: limit)
    }
}
