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
/// Sessions are durable (in the store), so a restart mid-download does not fail the device's next chunk. This instance's
/// state is the table of live sessions under a lock: chunk requests only touch it, and their counters are written every
/// second. A class, not an actor: an actor's isolation ends at every await of the store, so it never kept two
/// initiates of one device apart; ``initiate(deviceID:version:)`` does that itself.
public final class OTAService: Service, Sendable {
    /// Who hears about sessions: the dashboard's live streams (`changed`: a session started, progressed or ended) and
    /// the device event log (`failed`, with a reason from a closed set: a phase, an outcome, `abandoned`, `expired`).
    public struct OTAObserver: Sendable {
        public var changed: @Sendable (_ deviceID: String) -> Void = { _ in }
        public var failed: @Sendable (_ deviceID: String, _ reason: String) -> Void = { _, _ in }
        public init() {}
    }

    /// The in-memory side of an active session.
    struct LiveSession: Sendable {
        var sessionID: String
        var version: String
        /// What this instance knows: the stored counters when it took the session up, plus the chunks it served.
        var counters: OTAChunkCounters
        /// Chunks and bytes served here and not saved yet (saved as increments: other instances serve chunks too).
        var unsaved: (chunks: Int, bytes: Int64) = (0, 0)
        var dirty: Bool { unsaved.chunks > 0 }

        init(sessionID: String, version: String, counters: OTAChunkCounters) {
            self.sessionID = sessionID
            self.version = version
            self.counters = counters
        }

        init(_ session: OTASession) {
            self.init(
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

        /// The increments to save, which are then no longer unsaved.
        mutating func takeUnsaved() -> OTAChunkCounters {
            defer { unsaved = (0, 0) }
            return OTAChunkCounters(
                chunksServed: unsaved.chunks,
                bytesServed: unsaved.bytes,
                lastChunk: counters.lastChunk,
                updatedAtMs: counters.updatedAtMs
            )
        }
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
    /// Flushes since start (idle sessions are looked for every ``expiryEvery``).
    private let ticks = Mutex(0)
    /// Devices with an initiate in progress here.
    private let initiating = Mutex<Set<String>>([])

    let store: any OTAStore & DeviceRegistryStore
    let catalog: FirmwareCatalog
    var keyRing: FirmwareKeyRing { catalog.keyRing }
    var keys: FirmwareKeys? { keyRing.keys }
    var keysError: String? { keyRing.error }
    let logger: Logger
    let clock: @Sendable () -> Int64
    let metrics: ServerMetrics?
    let faults: FaultInjector?
    /// Log lines devices trigger (rate-limited: initiates and reports are unauthenticated).
    let deviceEvents: RateLimitedLog?
    let live: Mutex<[String: LiveSession]>
    /// Most sessions in progress at once.
    let maxActiveSessions: Int
    /// A session without chunk or progress for this long expires.
    let idleLimitMs: Int64
    let observer: OTAObserver
    /// Rollouts and deployments: they decide what `/ota/check` offers, and are told of initiates and session ends.
    let rollouts: RolloutService
    /// Other instances serve the same devices when the store is shared (issue 22): a device's session may be started,
    /// served and ended on any of them.
    let notices: InstanceNotices

    init(
        store: any OTAStore & DeviceRegistryStore,
        catalog: FirmwareCatalog,
        logger: Logger,
        clock: @escaping @Sendable () -> Int64,
        metrics: ServerMetrics? = nil,
        faults: FaultInjector? = nil,
        deviceEvents: RateLimitedLog? = nil,
        maxActiveSessions: Int = 10_000,
        idleLimitSeconds: Int = 1_800,
        observer: OTAObserver = OTAObserver(),
        rollouts: RolloutService,
        notices: InstanceNotices = InstanceNotices(feed: nil)
    ) async throws {
        self.notices = notices
        self.store = store
        self.observer = observer
        self.rollouts = rollouts
        self.deviceEvents = deviceEvents
        self.maxActiveSessions = maxActiveSessions
        self.idleLimitMs = Int64(idleLimitSeconds) * 1000
        self.metrics = metrics
        self.faults = faults
        self.catalog = catalog
        self.logger = logger
        self.clock = clock
        var sessions: [String: LiveSession] = [:]
        for session in try await store.activeSessions() { sessions[session.deviceID] = LiveSession(session) }
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
        let due = ticks.withLock { ticks in
            ticks += 1
            return ticks % Self.expiryEvery == 0
        }
        if due { await expireIdleSessions() }
    }

    /// Ends sessions without a chunk or progress for ``idleLimitMs`` as `expired` (a device that gave up, or an id
    /// someone made up): their in-memory state goes, and so does the row count of active sessions.
    public func expireIdleSessions() async {
        await flush()
        let now = clock()
        do {
            let expired = try await store.expireSessions(idleBeforeMs: now - idleLimitMs, nowMs: now)
            for session in expired {
                forgetLive(deviceID: session.deviceID, sessionID: session.sessionID)
                await notices.announce(.ota, session.deviceID)
                observer.failed(session.deviceID, "expired")
            }
            if !expired.isEmpty { logger.info("OTA sessions expired", metadata: ["count": "\(expired.count)"]) }
        } catch  where error.isShutdown {
        } catch {
            logger.warning("could not expire OTA sessions", metadata: ["error": "\(error.logDescription)"])
        }
    }

    /// Pending devices the registry dropped: their sessions are gone from the store, so from memory too.
    public func evicted(_ deviceIDs: [String]) {
        live.withLock { sessions in
            for deviceID in deviceIDs { sessions[deviceID] = nil }
        }
    }

    /// Writes the chunk counters that changed since the last flush.
    func flush() async {
        let dirty = live.withLock { sessions in
            var dirty: [String: (deviceID: String, counters: OTAChunkCounters)] = [:]
            for (deviceID, session) in sessions where session.dirty {
                dirty[session.sessionID] = (deviceID, sessions[deviceID]!.takeUnsaved())
            }
            return dirty
        }
        guard !dirty.isEmpty else { return }
        do {
            try await store.saveCounters(dirty.mapValues(\.counters))
        } catch {
            logger.warning("could not save OTA chunk counters", metadata: ["error": "\(error.logDescription)"])
            // Saved with the next flush.
            live.withLock { sessions in
                for (sessionID, entry) in dirty where sessions[entry.deviceID]?.sessionID == sessionID {
                    sessions[entry.deviceID]?.unsaved.chunks += entry.counters.chunksServed
                    sessions[entry.deviceID]?.unsaved.bytes += entry.counters.bytesServed
                }
            }
        }
    }

    /// Number of sessions in progress.
    public var activeSessionCount: Int { live.withLock { $0.count } }

    // MARK: Device requests

    /// The answer to `GET /ota/check/{id}?version=`: the version the device's rollout or deployment offers it (see
    /// ``RolloutService/offer(deviceID:runningVersion:)``), or why none. Open to anyone, so it changes nothing (the
    /// running version is recorded from the completion report and the registration).
    public func check(deviceID: String, runningVersion: String) async throws -> (offer: ServableFirmware?, reason: String) {
        switch try await rollouts.offer(deviceID: deviceID, runningVersion: runningVersion) {
        case .withheld(let reason): return (nil, reason)
        case .offer(let version):
            guard let firmware = try await catalog.firmware(version) else { return (nil, "version \(version) is not available") }
            return (firmware, "update available")
        }
    }

    /// The `update_info` offered to the device, with any injected `bad_hash`/`bad_signature` fault applied.
    public func updateInfo(_ firmware: ServableFirmware, deviceID: String) -> JSONValue {
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
    ///
    /// Initiates of one device run one at a time: a second one while the first awaits the store is refused (409). Both
    /// would start a session, and the one cached here for chunks could end up the one the store had already replaced
    /// (its chunks then counted against a dead session). The firmware sends one initiate and waits for its answer.
    public func initiate(deviceID: String, version: String) async throws -> (session: OTASession, replaced: [String]) {
        guard initiating.withLock({ $0.insert(deviceID).inserted }) else {
            throw OTAError.conflict("An initiate for \(deviceID) is already in progress")
        }
        defer { initiating.withLock { _ = $0.remove(deviceID) } }
        guard let firmware = try await catalog.firmware(version) else { throw OTAError.noFirmware(version) }
        enum Refusal {
            case busy
            case downloading(String)
        }
        let now = clock()
        await takeUpStoredSession(deviceID)
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
        // A rollout may hold the download (paused, wave not open, pacing): only the device's bound address gets here.
        let rolloutID: Int64?
        do {
            rolloutID = try await rollouts.admit(deviceID: deviceID, version: version)
        } catch RolloutService.Failure.held(let reason) {
            throw OTAError.held(reason)
        }
        var session = OTASession(
            sessionID: UUID().uuidString.lowercased(),
            deviceID: deviceID,
            version: version,
            deploymentID: rolloutID,
            fromVersion: try await store.device(deviceID)?.firmwareVersion,
            totalChunks: firmware.manifest.totalChunks,
            startedAtMs: now
        )
        session.updatedAtMs = now
        await saveCounters(of: deviceID)
        let replaced = try await store.startSession(session)
        await notices.announce(.ota, deviceID)
        live.withLock {
            $0[deviceID] = LiveSession(
                sessionID: session.sessionID,
                version: version,
                counters: OTAChunkCounters(chunksServed: 0, bytesServed: 0, lastChunk: nil, updatedAtMs: now)
            )
        }
        observer.changed(deviceID)
        deviceEvents?.log(
            level: .info,
            kind: "ota_started",
            "OTA session started",
            metadata: ["device_id": LogText.value(deviceID), "version": LogText.value(version), "session_id": "\(session.sessionID)"]
        )
        return (session, replaced)
    }

    /// The reply to `GET /ota/chunk/{id}?version=&chunk=`, already serialized. Does not suspend.
    public func chunk(deviceID: String, version: String, index text: String) throws -> ByteBuffer {
        guard let firmware = catalog.cached(version) else { throw OTAError.noFirmware(version) }
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
            session.unsaved.chunks += 1
            session.unsaved.bytes += Int64(size)
            sessions[deviceID] = session
            return nil
        }
        if let problem { throw problem }
        observer.changed(deviceID)
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

    /// The live counters of the device's active session merged into the stored row.
    ///
    /// The stored row plus the unsaved increments, or what this instance knows when that is more: a flush takes the
    /// increments before its commit lands, and a row read in between lacks them (a dashboard stream once showed 4
    /// chunks served, then 3, and never 5).
    public func withLiveCounters(_ session: OTASession) -> OTASession {
        guard session.outcome == nil, let current = live.withLock({ $0[session.deviceID] }),
            current.sessionID == session.sessionID
        else { return session }
        var merged = session
        merged.chunksServed = max(session.chunksServed + current.unsaved.chunks, current.counters.chunksServed)
        merged.bytesServed = max(session.bytesServed + current.unsaved.bytes, current.counters.bytesServed)
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
            return (session.sessionID, sessions[deviceID]!.takeUnsaved())
        }
        guard let (sessionID, counters) = pending else { return }
        try? await store.saveCounters([sessionID: counters])
    }
}
