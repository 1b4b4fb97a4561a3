import EcoWattProtocol
import EcoWattStorage
import FirmwareImage
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// FOTA (spec §7): offers deployed updates, tracks one session per device from `initiate` to the boot report, and
/// serves chunks.
///
/// Sessions are durable (SQLite), so a restart mid-download does not fail the device's next chunk. Control requests
/// (initiate, progress, complete, cancel) are serialized on the actor; chunk requests only touch an in-memory table
/// under a lock, and their counters are written every second.
public actor OTAService: Service {
    /// The in-memory side of an active session.
    struct LiveSession: Sendable {
        var sessionID: String
        var version: String
        var counters: OTAChunkCounters
        var dirty = false
    }

    /// Phases the firmware reports (spec §7.5), plus `rollback` which the original server documented.
    public static let phases: Set<String> = [
        "downloading", "failed", "download_complete", "verifying", "verification_failed", "verification_success",
        "installing", "rollback",
    ]
    /// Statuses of `POST /ota/{id}/complete` (spec §7.1 step 10).
    public static let completionStatuses: Set<String> = ["success", "pending_verify", "rolled_back", "failed"]
    static let flushInterval = Duration.seconds(1)
    /// A session whose last chunk is this recent is a download in progress.
    static let downloadActiveMs: Int64 = 120_000
    /// Idle sessions are looked for every 30 flushes.
    static let expiryEvery = 30
    /// The progress message that opens every download attempt (spec §7.1 step 2).
    static let attemptStartMessage = "Starting firmware download"
    private var ticks = 0

    let store: any OTAStore & DeviceRegistryStore
    nonisolated let catalog: FirmwareCatalog
    nonisolated var keyRing: FirmwareKeyRing { catalog.keyRing }
    nonisolated var keys: FirmwareKeys? { keyRing.keys }
    nonisolated var keysError: String? { keyRing.error }
    let logger: Logger
    nonisolated let clock: @Sendable () -> Int64
    nonisolated let metrics: ServerMetrics?
    nonisolated let faults: FaultInjector?
    /// Log lines devices trigger (rate-limited: initiates and reports are unauthenticated).
    nonisolated let deviceEvents: RateLimitedLog?
    nonisolated let live: Mutex<[String: LiveSession]>
    /// Most sessions in progress at once.
    nonisolated let maxActiveSessions: Int
    /// A session without chunk or progress for this long expires.
    nonisolated let idleLimitMs: Int64

    init(
        store: any OTAStore & DeviceRegistryStore,
        catalog: FirmwareCatalog,
        logger: Logger,
        clock: @escaping @Sendable () -> Int64,
        metrics: ServerMetrics? = nil,
        faults: FaultInjector? = nil,
        deviceEvents: RateLimitedLog? = nil,
        maxActiveSessions: Int = 10_000,
        idleLimitSeconds: Int = 1_800
    ) async throws {
        self.store = store
        self.deviceEvents = deviceEvents
        self.maxActiveSessions = maxActiveSessions
        self.idleLimitMs = Int64(idleLimitSeconds) * 1000
        self.metrics = metrics
        self.faults = faults
        self.catalog = catalog
        self.logger = logger
        self.clock = clock
        var sessions: [String: LiveSession] = [:]
        for session in try await store.activeSessions() {
            sessions[session.deviceID] = LiveSession(
                sessionID: session.sessionID,
                version: session.version,
                counters: OTAChunkCounters(
                    chunksServed: session.chunksServed,
                    bytesServed: session.bytesServed,
                    lastChunk: session.lastChunk,
                    updatedAtMs: session.updatedAtMs
                )
            )
        }
        self.live = Mutex(sessions)
        if !sessions.isEmpty { logger.info("resumed OTA sessions", metadata: ["count": "\(sessions.count)"]) }
    }

    public func run() async throws {
        await repeatUntilShutdown(every: Self.flushInterval) { await self.tick() }
        await flush()
    }

    /// Flushes the chunk counters every second, and expires idle sessions every ``expiryEvery`` ticks.
    private func tick() async {
        await flush()
        ticks += 1
        if ticks % Self.expiryEvery == 0 { await expireIdleSessions() }
    }

    /// Ends sessions without a chunk or progress for ``idleLimitMs`` as `expired` (a device that gave up, or an id
    /// someone made up): their in-memory state goes, and so does the row count of active sessions.
    public func expireIdleSessions() async {
        await flush()
        let now = clock()
        do {
            let expired = try await store.expireSessions(idleBeforeMs: now - idleLimitMs, nowMs: now)
            for session in expired { forgetLive(deviceID: session.deviceID, sessionID: session.sessionID) }
            if !expired.isEmpty { logger.info("OTA sessions expired", metadata: ["count": "\(expired.count)"]) }
        } catch {
            logger.warning("could not expire OTA sessions", metadata: ["error": "\(error)"])
        }
    }

    /// Pending devices the registry dropped: their sessions are gone from the store, so from memory too.
    public nonisolated func evicted(_ deviceIDs: [String]) {
        live.withLock { sessions in
            for deviceID in deviceIDs { sessions[deviceID] = nil }
        }
    }

    /// Writes the chunk counters that changed since the last flush.
    func flush() async {
        let dirty = live.withLock { sessions in
            var dirty: [String: OTAChunkCounters] = [:]
            for (deviceID, session) in sessions where session.dirty {
                dirty[session.sessionID] = session.counters
                sessions[deviceID]?.dirty = false
            }
            return dirty
        }
        guard !dirty.isEmpty else { return }
        do {
            try await store.saveCounters(dirty)
        } catch {
            logger.warning("could not save OTA chunk counters", metadata: ["error": "\(error)"])
        }
    }

    /// Number of sessions in progress.
    public nonisolated var activeSessionCount: Int { live.withLock { $0.count } }

    // MARK: Device requests

    /// The answer to `GET /ota/check/{id}?version=`: the deployed version's `update_info`, unless the device already
    /// runs it, installed it under another compiled-in version, or failed it `max_attempts` times. Open to anyone, so
    /// it changes nothing (the running version is recorded from the completion report and the registration).
    public func check(deviceID: String, runningVersion: String) async throws -> (offer: ServableFirmware?, reason: String) {
        guard let deployment = try await store.deployment(for: deviceID) else { return (nil, "no deployment") }
        guard deployment.version != runningVersion else { return (nil, "already running \(runningVersion)") }
        guard let firmware = try catalog.firmware(deployment.version) else {
            return (nil, "deployed version \(deployment.version) is not available")
        }
        let attempts = try await store.attempts(deviceID: deviceID, version: deployment.version, sinceMs: deployment.createdAtMs)
        if attempts.versionMismatch {
            return (nil, "installed \(deployment.version) before but reported another version")
        }
        if attempts.failed >= deployment.maxAttempts {
            return (nil, "\(attempts.failed) failed attempts of \(deployment.version)")
        }
        return (firmware, "update available")
    }

    /// The `update_info` offered to the device, with any injected `bad_hash`/`bad_signature` fault applied.
    public nonisolated func updateInfo(_ firmware: ServableFirmware, deviceID: String) -> JSONValue {
        guard case .object(var members) = firmware.manifest.updateInfo else { return firmware.manifest.updateInfo }
        if faults?.otaFault(.badHash, deviceID: deviceID) != nil, let index = members.firstIndex(where: { $0.0 == "sha256_hash" }) {
            members[index].1 = .string(FaultInjector.randomHex(64))
        }
        if faults?.otaFault(.badSignature, deviceID: deviceID) != nil,
            let index = members.firstIndex(where: { $0.0 == "signature" })
        {
            members[index].1 = .string("INVALID_SIG_" + FaultInjector.randomHex(32))
        }
        return .object(members)
    }

    /// `POST /ota/initiate/{id}`: always starts a new session, replacing any the device still has (spec §7.5: a failed
    /// download must not block the next attempt).
    public func initiate(deviceID: String, version: String) async throws -> (session: OTASession, replaced: [String]) {
        guard let firmware = try catalog.firmware(version) else { throw OTAError.noFirmware(version) }
        enum Refusal {
            case busy
            case downloading(String)
        }
        let now = clock()
        let refusal: Refusal? = live.withLock { sessions in
            if let active = sessions[deviceID] {
                // Another version while a download is going (a chunk within two minutes): only an operator's cancel
                // ends it (a forged initiate must not abort the device's download).
                return active.version != version && now - active.counters.updatedAtMs < Self.downloadActiveMs
                    ? .downloading(active.version) : nil
            }
            return sessions.count >= maxActiveSessions ? .busy : nil
        }
        switch refusal {
        case .busy: throw OTAError.busy(maxActiveSessions)
        case .downloading(let active):
            throw OTAError.conflict("A download of \(active) is in progress for \(deviceID); an operator can cancel it")
        case nil: break
        }
        let deployment = try await store.deployment(for: deviceID)
        var session = OTASession(
            sessionID: UUID().uuidString.lowercased(),
            deviceID: deviceID,
            version: version,
            deploymentID: deployment?.version == version ? deployment?.id : nil,
            fromVersion: try await store.device(deviceID)?.firmwareVersion,
            totalChunks: firmware.manifest.totalChunks,
            startedAtMs: now
        )
        session.updatedAtMs = now
        await saveCounters(of: deviceID)
        let replaced = try await store.startSession(session)
        live.withLock {
            $0[deviceID] = LiveSession(
                sessionID: session.sessionID,
                version: version,
                counters: OTAChunkCounters(chunksServed: 0, bytesServed: 0, lastChunk: nil, updatedAtMs: now)
            )
        }
        deviceEvents?.log(
            level: .info,
            kind: "ota_started",
            "OTA session started",
            metadata: ["device_id": LogText.value(deviceID), "version": LogText.value(version), "session_id": "\(session.sessionID)"]
        )
        return (session, replaced)
    }

    /// The reply to `GET /ota/chunk/{id}?version=&chunk=`, already serialized. Does not suspend.
    public nonisolated func chunk(deviceID: String, version: String, index text: String) throws -> ByteBuffer {
        guard let firmware = try catalog.firmware(version) else { throw OTAError.noFirmware(version) }
        let total = firmware.manifest.totalChunks
        guard let index = Int(text), (0..<total).contains(index) else {
            throw OTAError.chunkOutOfRange(index: String(text.prefix(16)), total: total)
        }
        let reply = firmware.chunkReplies[index]
        let size = firmware.firmware.chunk(index).count
        let now = clock()
        let problem: OTAError? = live.withLock { sessions in
            guard var session = sessions[deviceID] else { return .noActiveSession(deviceID) }
            guard session.version == version else { return .sessionVersion(active: session.version, requested: version) }
            session.counters.chunksServed += 1
            session.counters.bytesServed += Int64(size)
            session.counters.lastChunk = index
            session.counters.updatedAtMs = now
            session.dirty = true
            sessions[deviceID] = session
            return nil
        }
        if let problem { throw problem }
        metrics?.increment("ecowatt_ota_chunks_served_total")
        metrics?.increment("ecowatt_ota_bytes_served_total", by: size)
        if faults?.otaFault(.corruptChunk, deviceID: deviceID, chunk: index) != nil {
            // Spec §7.8: 5-10 random ciphertext bytes flipped; the device then fails at 0xE9, the size or the hash.
            var bytes = Array(firmware.firmware.chunk(index))
            for _ in 0..<Int.random(in: 5...10) { bytes[Int.random(in: 0..<bytes.count)] ^= UInt8.random(in: 1...255) }
            return ByteBuffer(string: ServableFirmware.chunkReply(Data(bytes).base64EncodedString(), size: bytes.count))
        }
        return reply
    }

    /// `POST /ota/{id}/progress`: records the phase; `failed` and `verification_failed` end the session.
    /// - Returns: the session, `nil` when the device has none yet.
    public func progress(
        deviceID: String,
        phase: String,
        progress: Int?,
        message: String?,
        deviceTime: (value: Int64?, invalid: Bool)
    ) async throws
        -> OTASession?
    {
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
            deviceEvents?.log(
                level: .notice,
                kind: "ota_failed",
                "OTA session abandoned",
                metadata: ["device_id": LogText.value(deviceID), "session_id": "\(open.sessionID)"]
            )
            current = nil
        }
        // Without a session (the firmware reports "Starting firmware download..." before it initiates, spec §7.1
        // step 2) the event is kept and attached to the session the next initiate starts.
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
        guard let current else { return nil }
        if outcome != nil {
            forgetLive(deviceID: deviceID, sessionID: current.sessionID)
            deviceEvents?.log(
                level: .notice,
                kind: "ota_failed",
                "OTA session failed",
                metadata: ["device_id": LogText.value(deviceID), "phase": "\(phase)", "message": LogText.value(message ?? "")]
            )
        }
        return try await store.session(current.sessionID)
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
        guard let current = live.withLock({ $0[deviceID] }) else { return (nil, nil) }
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
        deviceEvents?.log(
            level: .notice,
            kind: "ota_ended",
            "OTA session ended",
            metadata: ["device_id": LogText.value(deviceID), "outcome": "\(outcome.rawValue)", "version": LogText.value(version)]
        )
        return (outcome, try await store.session(session.sessionID))
    }

    /// The live counters of the device's active session merged into the stored row.
    public func withLiveCounters(_ session: OTASession) -> OTASession {
        guard session.outcome == nil, let current = live.withLock({ $0[session.deviceID] }),
            current.sessionID == session.sessionID
        else { return session }
        var merged = session
        merged.chunksServed = current.counters.chunksServed
        merged.bytesServed = current.counters.bytesServed
        merged.lastChunk = current.counters.lastChunk
        merged.updatedAtMs = max(session.updatedAtMs, current.counters.updatedAtMs)
        return merged
    }

    /// Drops the device's in-memory session if it is still `sessionID` (an initiate may have replaced it meanwhile).
    func forgetLive(deviceID: String, sessionID: String) {
        live.withLock { sessions in
            if sessions[deviceID]?.sessionID == sessionID { sessions[deviceID] = nil }
        }
    }

    /// Writes one device's unsaved counters before its session changes state.
    func saveCounters(of deviceID: String) async {
        let pending: (String, OTAChunkCounters)? = live.withLock { sessions in
            guard let session = sessions[deviceID], session.dirty else { return nil }
            sessions[deviceID]?.dirty = false
            return (session.sessionID, session.counters)
        }
        guard let (sessionID, counters) = pending else { return }
        try? await store.saveCounters([sessionID: counters])
    }
}
