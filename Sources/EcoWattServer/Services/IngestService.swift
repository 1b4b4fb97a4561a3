import Crypto
import EcoWattProtocol
import EcoWattStorage
import Foundation
import Logging
import MQTTBridge
import ServiceLifecycle
import Synchronization

/// Result of an accepted upload.
public struct IngestOutcome: Sendable {
    /// The upload's packets, resends included (they are acknowledged, not stored again).
    public var packets: [DecodedPacket]
    /// Packets of earlier uploads this one decoded (their predecessors arrived) or re-timed.
    public var updates: [StreamUpdate] = []
    /// Samples stored by this upload: its own new packets' and those of earlier packets it decoded.
    public var samplesStored: Int {
        packets.reduce(0) { $0 + ($1.resend ? 0 : $1.samples?.count ?? 0) } + updates.reduce(0) { $0 + ($1.samples?.count ?? 0) }
    }
    public var undecodable: Int { packets.filter { !$0.resend && !$0.isDecoded }.count }
    public var resent: Int { packets.filter(\.resend).count }
    /// Earlier packets decoded by this upload.
    public var completed: Int { updates.filter { $0.samples != nil }.count }
}

/// The security gate and telemetry ingest (spec §2, §3).
///
/// Pure work (envelope parsing, MAC, inner JSON) runs concurrently, outside any lock. One lock guards the per-device
/// anti-replay and decoder state: under it an upload's nonce is checked, its packets are decoded against the device's
/// encoder model and **its commit is queued**, so uploads of one device commit in the order they were admitted and
/// exactly one of several identical uploads is accepted. A caller is answered only after its commit.
///
/// A lock, not an actor (issue 23): nothing under it suspends (the decode takes a few microseconds), and an actor
/// cost every upload two executor hops, onto it and back after the commit, each a queued job on a contended actor.
public final class IngestService: Service, Sendable {
    let store: any TelemetryStore
    private let fleetKey: EnvelopeKey
    let logger: Logger
    private let keyCache = Mutex<[String: DeviceKeys]>([:])
    /// `open`: any id signed with the fleet key is accepted and registered; `known`: only admitted ids.
    private let admission: DeviceAdmission
    /// Told when a device's first upload under its next key retired the current one.
    private let keyRotated: (@Sendable (_ deviceID: String) async -> Void)?
    private let counters = Mutex(IngestCounters())
    private let metrics: ServerMetrics?
    /// Where uploads the storage refused are logged (rate-limited: a full disk refuses every upload).
    private let serverErrors: RateLimitedLog?
    private let feed: MQTTPublisher?
    /// Nonce and decoder state per device, ahead of the store by the commits in flight. Bounded (signed uploads prove
    /// little while the fleet key is public): past ``cacheLimit`` the least recently used entries without a commit in
    /// flight are dropped and read back from the store when their device uploads again.
    let devices = Mutex(DeviceStateCache())
    private let cacheLimit: Int
    /// J0 of the nonce-jump rule: how far ahead of the last accepted nonce an upload may be right after it.
    private let nonceJumpAllowance: UInt64

    /// - Parameter feed: the MQTT outbox publisher; each accepted upload's messages commit with its samples.
    public init(
        store: any TelemetryStore,
        fleetKey: SymmetricKey,
        logger: Logger,
        metrics: ServerMetrics? = nil,
        serverErrors: RateLimitedLog? = nil,
        feed: MQTTPublisher? = nil,
        cacheLimit: Int = 100_000,
        nonceJumpAllowance: UInt64 = 1024,
        admission: DeviceAdmission = .open,
        keyRotated: (@Sendable (_ deviceID: String) async -> Void)? = nil
    ) {
        self.store = store
        self.admission = admission
        self.keyRotated = keyRotated
        self.cacheLimit = cacheLimit
        self.nonceJumpAllowance = nonceJumpAllowance
        self.metrics = metrics
        self.serverErrors = serverErrors
        self.feed = feed
        self.fleetKey = EnvelopeKey(fleetKey)
        self.logger = logger
    }

    /// How often per-device keys are reloaded (other instances and `ecowatt device set-key` change them too; this
    /// server's own changes call ``refreshKeys()`` at once).
    public static let keyRefreshInterval = Duration.seconds(5)

    public func run() async throws {
        await refreshKeys()
        await repeatUntilShutdown(every: Self.keyRefreshInterval) { await self.refreshKeys() }
    }

    /// Reloads per-device keys from the store.
    public func refreshKeys() async {
        do {
            let credentials = try await store.deviceCredentials()
            keyCache.withLock { $0 = credentials.mapValues(DeviceKeys.init) }
        } catch  where error.isShutdown {
        } catch {
            logger.warning("could not load device keys", metadata: ["error": "\(error.logDescription)"])
        }
    }

    /// The HMAC key of `deviceID`: its own if set, else the fleet key.
    public func key(for deviceID: String) -> EnvelopeKey {
        keyCache.withLock { $0[deviceID]?.current } ?? fleetKey
    }

    /// Checks the MAC under the device's current key (the fleet key when it has none), then under its next key;
    /// returns whether the next key verified it. Revoked devices are refused before anything else.
    private func verify(_ envelope: SecuredEnvelope, deviceID: String) throws(IngestError) -> Bool {
        let keys = keyCache.withLock { $0[deviceID] }
        if keys?.revoked == true {
            countRejection("revoked")
            throw .revoked
        }
        do {
            try envelope.verify(key: keys?.current ?? fleetKey)
            return false
        } catch {
            guard let next = keys?.next, (try? envelope.verify(key: next)) != nil else {
                countRejection(error.category)
                throw .security(error)
            }
            return true
        }
    }

    /// Verifies, decodes and durably stores one upload of `deviceID` (the URL's device id).
    /// - Parameters:
    ///   - clientAddress: where the upload came from; once it is stored, the device is bound to it (issue 14).
    ///   - bootSignalAtMs: when a held boot signal from this address was received, which this upload confirms: it takes
    ///     effect before the upload's packets are decoded (they are the first batches of the new boot).
    public func ingest(
        deviceID: String,
        body: [UInt8],
        arrivalMs: Int64,
        clientAddress: String? = nil,
        bootSignalAtMs: Int64? = nil
    ) async throws(IngestError)
        -> IngestOutcome
    {
        let upload: UploadPayload
        let nonce: UInt32
        let underNextKey: Bool
        do {
            let envelope = try SecuredEnvelope(parsing: body)
            underNextKey = try verify(envelope, deviceID: deviceID)
            nonce = envelope.nonce
            do {
                upload = try UploadPayload(parsing: envelope.payload)
            } catch {
                count { $0.invalidPayload += 1 }
                metrics?.increment("ecowatt_uploads_rejected_total", [("reason", "invalid_payload")])
                throw IngestError.invalidPayload(error.description)
            }
            guard upload.deviceID == deviceID else {
                throw SecurityError.deviceMismatch(url: deviceID, payload: upload.deviceID)
            }
        } catch let error as SecurityError {
            countRejection(error.category)
            throw .security(error)
        } catch let error as IngestError {
            throw error
        } catch {
            throw .invalidPayload("\(error)")
        }
        let outcome = try await admit(
            Attempt(
                deviceID: deviceID,
                nonce: nonce,
                upload: upload,
                arrivalMs: arrivalMs,
                clientAddress: clientAddress,
                bootSignalAtMs: bootSignalAtMs
            )
        )
        if underNextKey { await retireCurrentKey(deviceID, atMs: arrivalMs) }
        count { $0.add(outcome) }
        if let metrics {
            metrics.increment("ecowatt_uploads_accepted_total")
            metrics.increment("ecowatt_packets_resent_total", by: outcome.resent)
            metrics.increment("ecowatt_packets_completed_total", by: outcome.completed)
            metrics.increment("ecowatt_samples_stored_total", by: outcome.updates.reduce(0) { $0 + ($1.samples?.count ?? 0) })
            for packet in outcome.packets where !packet.resend {
                let marker = CompressionMarker.markerLabel(packet.marker)
                metrics.increment("ecowatt_packets_total", [("marker", marker)])
                metrics.increment("ecowatt_samples_stored_total", by: packet.samples?.count ?? 0)
                if let reason = packet.reason {
                    metrics.increment("ecowatt_decode_failures_total", [("marker", marker), ("reason", reason.rawValue)])
                }
            }
        }
        return outcome
    }

    /// The first upload verified with the next key retires the current one (the device runs its new build).
    private func retireCurrentKey(_ deviceID: String, atMs: Int64) async {
        do {
            guard try await store.promoteNextDeviceKey(deviceID: deviceID, nowMs: atMs) else { return }
            await refreshKeys()
            logger.notice("device key rotated: the next key is now the current one", metadata: ["device_id": LogText.value(deviceID)])
            await keyRotated?(deviceID)
        } catch {
            // The next upload under the next key tries again.
            logger.warning("device key rotation not stored", metadata: ["device_id": LogText.value(deviceID), "error": "\(error.logDescription)"])
        }
    }

    /// Uploads decoded again at most, when other instances keep changing the device's state first.
    static let stateAttempts = 4

    /// A verified upload on its way to the device's state: what ``admit(_:)``, ``admitOnce(_:)`` and
    /// ``decide(_:_:_:)`` judge.
    private struct Attempt: Sendable {
        let deviceID: String
        let nonce: UInt32
        let upload: UploadPayload
        let arrivalMs: Int64
        /// Where the upload came from; once it is stored, the device is bound to it.
        let clientAddress: String?
        /// When a held boot signal this upload confirms was received: it takes effect before the packets are decoded.
        let bootSignalAtMs: Int64?
    }

    /// Checks and decodes the upload against the device's state and commits it. Another server instance may commit for
    /// the device between this one's read of its state and its commit: the commit then fails as `stateChanged`, and the
    /// upload is checked and decoded again against what is stored now (a replay by then is refused as one).
    private func admit(_ attempt: Attempt) async throws(IngestError) -> IngestOutcome {
        for round in 1...Self.stateAttempts {
            if let outcome = try await admitOnce(attempt) { return outcome }
            if round < Self.stateAttempts { metrics?.increment("ecowatt_ingest_state_conflicts_total") }
        }
        countStorageFailure()
        logger.error(
            "upload not stored: the device's state kept changing on other instances",
            metadata: ["device_id": LogText.value(attempt.deviceID)]
        )
        throw .storage("the device's state kept changing on other instances")
    }

    /// What the locked part of an attempt decided.
    private enum Decision: Sendable {
        case notAdmitted
        case replay(last: UInt32)
        case nonceJump(SecurityError)
        /// The commit is queued; `messages` MQTT messages were admitted to the feed when `queuedForFeed`.
        case queued(WriteTicket<Void>, StreamDecodeResult, queuedForFeed: Bool, messages: Int)
    }

    /// One attempt of ``admit(_:)``; `nil` when the state changed under it (another instance committed for the device
    /// first).
    private func admitOnce(_ attempt: Attempt) async throws(IngestError) -> IngestOutcome? {
        let (deviceID, nonce) = (attempt.deviceID, attempt.nonce)
        let decision: Decision
        do {
            decision = try await withState(deviceID) { cache, state in decide(&cache, state, attempt) }
        } catch {
            throw storageFailure("device state not loaded", deviceID, error)
        }
        let ticket: WriteTicket<Void>
        let decoded: StreamDecodeResult
        let queuedForFeed: Bool
        let messages: Int
        switch decision {
        case .notAdmitted:
            countRejection("not_admitted")
            try? await store.recordRefusedUpload(deviceID: deviceID, nowMs: attempt.arrivalMs)
            throw .notAdmitted
        case .replay(let last):
            let error = SecurityError.replay(nonce: nonce, lastAccepted: last)
            countRejection(error.category)
            throw .security(error)
        case .nonceJump(let error):
            countRejection(error.category)
            try? await store.recordNonceJumpRefused(deviceID: deviceID, nonce: nonce)
            throw .security(error)
        case .queued(let queued, let result, let feedQueued, let count):
            (ticket, decoded, queuedForFeed, messages) = (queued, result, feedQueued, count)
        }
        do {
            try await ticket.value()
        } catch {
            // The cached state ran ahead of the store; drop it so the next upload reloads what was committed.
            devices.withLock { $0[deviceID] = nil }
            if case StoreError.stateChanged = error { return nil }
            if case StoreError.nonceNotIncreasing(_, _, let stored) = error {
                countRejection("replay")
                throw .security(.replay(nonce: nonce, lastAccepted: stored))
            }
            throw storageFailure("upload not stored", deviceID, error)
        }
        devices.withLock { cache in
            cache.endCommit(deviceID)
            cache.trim(to: cacheLimit)
        }
        if queuedForFeed { feed?.committed(messages) }
        return IngestOutcome(packets: decoded.packets, updates: decoded.updates)
    }

    /// The locked part of an attempt: the nonce rules, the decode against the device's model, the new state cached
    /// and the commit queued, with no suspension.
    private func decide(_ cache: inout DeviceStateCache, _ cached: DeviceIngestState, _ attempt: Attempt) -> Decision {
        let (deviceID, nonce, arrivalMs) = (attempt.deviceID, attempt.nonce, attempt.arrivalMs)
        var state = cached
        if admission == .known, !state.admitted {
            cache[deviceID] = nil
            return .notAdmitted
        }
        if let last = state.lastNonce, nonce <= last { return .replay(last: last) }
        if let last = state.lastNonce, let since = state.lastUploadMs {
            // The firmware spends one nonce per attempt, two per failed upload period of at least a second (spec §2.3):
            // a nonce further ahead than that is an attempt to poison the device's nonce (4 294 967 295 would lock it out).
            let allowance = nonceJumpAllowance + 2 * UInt64(max(0, arrivalMs - since) / 1000)
            if UInt64(nonce) - UInt64(last) > allowance {
                return .nonceJump(.nonceJump(nonce: nonce, lastAccepted: last, allowance: allowance))
            }
        }
        if let bootSignalAtMs = attempt.bootSignalAtMs, state.lastNonce != nil { state.stream.bootSignal(atMs: bootSignalAtMs) }
        let decoded = DeviceStreamDecoder.decode(
            attempt.upload,
            arrivalMs: arrivalMs,
            failedAttempts: Self.failedAttempts(nonce: nonce, lastNonce: state.lastNonce),
            state: &state.stream
        )
        let packets = decoded.packets.filter { !$0.resend }
        let expectedVersion = state.version
        state.lastNonce = nonce
        state.lastUploadMs = arrivalMs
        state.admitted = true
        state.version += 1
        var record = IngestRecord(
            deviceID: deviceID,
            nonce: nonce,
            receivedAtMs: arrivalMs,
            packets: packets,
            streamState: state.stream
        )
        cache[deviceID] = state
        cache.beginCommit(deviceID)
        record.updates = decoded.updates
        let messages = packets.count + decoded.updates.filter { $0.samples != nil }.count
        record.queueForFeed = feed?.admit(messages) ?? false
        record.clientAddress = attempt.clientAddress
        record.expectedVersion = expectedVersion
        return .queued(store.submit(record), decoded, queuedForFeed: record.queueForFeed, messages: messages)
    }

    /// Attempts the device made since its last accepted upload (one nonce each, spec §2.3); for a device never seen, the
    /// attempts since the firmware's first nonce, 11001; `nil` when that says nothing (an older nonce after a reset).
    static func failedAttempts(nonce: UInt32, lastNonce: UInt32?) -> UInt32? {
        guard let lastNonce else { return nonce >= 11_001 ? nonce - 11_001 : nil }
        return nonce > lastNonce ? nonce - lastNonce - 1 : nil
    }

    /// Runs `body` under the state lock with the device's state: the cached one, else the stored one, read first
    /// (outside the lock: another request of the device may have cached a newer state meanwhile, and that one wins).
    func withState<T: Sendable>(_ deviceID: String, _ body: (inout DeviceStateCache, DeviceIngestState) -> T) async throws -> T {
        let cached = devices.withLock { cache -> T? in
            guard let state = cache[deviceID] else { return nil }
            return body(&cache, state)
        }
        if let cached { return cached }
        let loaded = try await store.ingestState(deviceID: deviceID)
        return devices.withLock { cache in body(&cache, cache[deviceID] ?? loaded) }
    }

    /// Devices whose state is held in memory (at most about ``cacheLimit``, plus those with commits in flight).
    public var cachedDevices: Int { devices.withLock { $0.count } }

    /// A snapshot of the counters since start.
    public var statistics: IngestCounters { counters.withLock { $0 } }

    private func count(_ update: (inout IngestCounters) -> Void) {
        counters.withLock { update(&$0) }
    }

    /// Counts a refused envelope in the statistics and the metrics.
    private func countRejection(_ reason: String) {
        count { $0.rejected[reason, default: 0] += 1 }
        metrics?.increment("ecowatt_uploads_rejected_total", [("reason", reason)])
    }

    /// Counts an upload that could not be stored.
    private func countStorageFailure() {
        count { $0.storageFailures += 1 }
        metrics?.increment("ecowatt_uploads_rejected_total", [("reason", "storage")])
    }

    /// An upload the storage did not take: counted, logged with the database's own message, and answered with a reason
    /// that carries none of it (SQL, paths).
    private func storageFailure(_ message: Logger.Message, _ deviceID: String, _ error: any Error) -> IngestError {
        countStorageFailure()
        let metadata: Logger.Metadata = ["device_id": LogText.value(deviceID), "error": "\(error.logDescription)"]
        if let serverErrors {
            serverErrors.log(level: .error, kind: "\(message)", message, metadata: metadata)
        } else {
            logger.error(message, metadata: metadata)
        }
        return .storage(error.isShutdown ? "the server is shutting down" : "the database did not take the write")
    }
}
