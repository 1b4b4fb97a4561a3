import EcoWattProtocol

/// Everything one accepted upload writes, committed atomically with its nonce.
public struct IngestRecord: Sendable {
    public var deviceID: String
    public var nonce: UInt32
    public var receivedAtMs: Int64
    public var packets: [DecodedPacket]
    /// Packets of earlier uploads this one decoded or re-timed (issue 15), in the same transaction.
    public var updates: [StreamUpdate] = []
    /// Decoder state after this upload (persisted so a server restart keeps decoding 0x71).
    public var streamState: DeviceStreamState
    /// Queue every packet in the MQTT outbox, in the same transaction.
    public var queueForFeed = false
    /// The client address the upload came from: the device's binding from now on (issue 14).
    public var clientAddress: String?
    /// The device state version the upload was decoded against (``DeviceIngestState/version``): the commit fails with
    /// ``StoreError/stateChanged(deviceID:)`` when another writer (another server instance) changed the state since.
    /// `nil`: no such check (tools that fill a database).
    public var expectedVersion: Int64?

    public init(
        deviceID: String,
        nonce: UInt32,
        receivedAtMs: Int64,
        packets: [DecodedPacket],
        streamState: DeviceStreamState
    ) {
        self.deviceID = deviceID
        self.nonce = nonce
        self.receivedAtMs = receivedAtMs
        self.packets = packets
        self.streamState = streamState
    }
}

/// What ingest needs to know about a device before it accepts an upload.
public struct DeviceIngestState: Sendable, Equatable {
    /// Last accepted nonce (`nil`: never seen, any nonce is accepted).
    public var lastNonce: UInt32?
    public var stream: DeviceStreamState
    /// When the last upload was accepted (the nonce-jump allowance grows with the time since).
    public var lastUploadMs: Int64?
    /// Whether the device has a registry row that is not pending (verified uploads or an operator's): what
    /// `device_admission = known` accepts uploads from.
    public var admitted: Bool
    /// Counts the writes of the nonce and decoder state (0: none yet). Several server instances cache this state; each
    /// commit names the version it was decoded against, so a state another instance changed is never overwritten.
    public var version: Int64

    public init(lastNonce: UInt32?, stream: DeviceStreamState, lastUploadMs: Int64? = nil, admitted: Bool = false, version: Int64 = 0) {
        self.lastNonce = lastNonce
        self.stream = stream
        self.lastUploadMs = lastUploadMs
        self.admitted = admitted
        self.version = version
    }
}

/// One stored sample.
public struct SampleRow: Sendable, Equatable {
    public var deviceID: String
    public var timestampMs: Int64
    public var registerLayout: [Int]
    public var rawValues: [UInt16]
    public var method: String
    public var ratio: Double
    public var approximate: Bool
    /// The time is estimated from the arrival time (the device clock was not synced).
    public var timeEstimated = false

    public init(
        deviceID: String,
        timestampMs: Int64,
        registerLayout: [Int],
        rawValues: [UInt16],
        method: String,
        ratio: Double,
        approximate: Bool,
        timeEstimated: Bool = false
    ) {
        self.timeEstimated = timeEstimated
        self.deviceID = deviceID
        self.timestampMs = timestampMs
        self.registerLayout = registerLayout
        self.rawValues = rawValues
        self.method = method
        self.ratio = ratio
        self.approximate = approximate
    }
}

/// One stored packet (decoded or not).
public struct PacketRow: Sendable, Equatable {
    public var id: Int64
    public var deviceID: String
    public var nonce: UInt32
    public var packetIndex: Int
    public var marker: UInt8?
    public var method: String
    public var registerLayout: [Int]
    public var sampleCount: Int
    public var lastSampleMs: Int64
    public var decoded: Bool
    public var approximate: Bool
    public var truncated: Bool
    public var reason: String?
    public var blob: [UInt8]?
    /// What the decoder said about it (why it is undecodable, how much of a cut blob it kept).
    public var detail: String? = nil
    /// The decoder's device-scoped number (issue 15; `nil` for packets stored before it).
    public var serial: Int64? = nil
    public var timeEstimated = false

    public init(
        id: Int64,
        deviceID: String,
        nonce: UInt32,
        packetIndex: Int,
        marker: UInt8?,
        method: String,
        registerLayout: [Int],
        sampleCount: Int,
        lastSampleMs: Int64,
        decoded: Bool,
        approximate: Bool,
        truncated: Bool,
        reason: String?,
        blob: [UInt8]?,
        detail: String? = nil,
        serial: Int64? = nil,
        timeEstimated: Bool = false
    ) {
        self.timeEstimated = timeEstimated
        self.id = id
        self.deviceID = deviceID
        self.nonce = nonce
        self.packetIndex = packetIndex
        self.marker = marker
        self.method = method
        self.registerLayout = registerLayout
        self.sampleCount = sampleCount
        self.lastSampleMs = lastSampleMs
        self.decoded = decoded
        self.approximate = approximate
        self.truncated = truncated
        self.reason = reason
        self.blob = blob
        self.detail = detail
        self.serial = serial
    }
}

/// The storage operations telemetry ingest and its queries need. SQLite implements it today; a PostgreSQL
/// backend can implement the same protocol.
public protocol TelemetryStore: DeviceCredentialStore {
    /// Nonce and decoder state of a device (defaults for a device never seen).
    func ingestState(deviceID: String) async throws -> DeviceIngestState
    /// Queues an accepted upload for an atomic commit (nonce, which must increase, device, packets, samples,
    /// decoder state). The ordering contract every backend keeps is **per device**: one device's writes commit in the
    /// order they were submitted (queuing is synchronous, so a caller's submissions are ordered); writes of different
    /// devices may commit in any order, or concurrently. The nonce check inside the transaction stays the source of
    /// truth: of two uploads racing for one device, the one that commits second with a nonce not above the first's is
    /// refused. Await the ticket.
    /// The ticket throws ``StoreError/nonceNotIncreasing(deviceID:nonce:stored:)`` when a concurrent upload won.
    func submit(_ record: IngestRecord) -> WriteTicket<Void>
    /// Queues the write of a device's decoder state (after a boot signal) for a device the store knows.
    func submitStreamState(deviceID: String, state: DeviceStreamState) -> WriteTicket<Void>
    /// Counts a refused nonce jump against the device (shown to operators).
    func recordNonceJumpRefused(deviceID: String, nonce: UInt32) async throws
    /// Queues forgetting the anti-replay state of a device (operator reset, spec §2.4); `true` if there was any.
    func submitNonceReset(deviceID: String) -> WriteTicket<Bool>
    /// Latest sample of a device.
    func latestSample(deviceID: String) async throws -> SampleRow?
    /// Samples in `[fromMs, toMs]`, oldest first, at most `limit`.
    func samples(deviceID: String, fromMs: Int64, toMs: Int64, limit: Int) async throws -> [SampleRow]
    /// Packets of a device, newest first.
    /// Stored packets, newest first (by id), those with an id below `before` when it is given.
    func packets(deviceID: String, before: Int64?, limit: Int) async throws -> [PacketRow]
    /// Rollups of a device whose bucket starts in `[fromMs, toMs]` (the bucket `fromMs` falls in included), oldest
    /// first, at most `limit`.
    func rollups(
        deviceID: String,
        resolution: RollupResolution,
        fromMs: Int64,
        toMs: Int64,
        limit: Int
    ) async throws
        -> [TelemetryRollup]
    /// Brings the rollups of up to `limit` devices whose telemetry changed up to date (a background job calls it);
    /// returns how many devices it looked at (0: all are up to date).
    func refreshRollups(limit: Int) async throws -> Int
    /// Drops raw telemetry and rollups older than `cutoffs`, at most about `limit` rows per kind; returns how many.
    func pruneTelemetry(_ cutoffs: TelemetryCutoffs, limit: Int) async throws -> Int
}

/// A packet waiting in the MQTT outbox, read back from the stored packet and its samples.
public struct OutboxPacket: Sendable, Equatable {
    /// The outbox row id (publish order).
    public var id: Int64
    public var deviceID: String
    public var method: String
    public var registerLayout: [Int]
    /// Raw values, one row per sample in layout order (empty when undecodable).
    public var samples: [[UInt16]]
    public var sampleTimesMs: [Int64]
    public var lastSampleMs: Int64
    public var approximate: Bool
    /// Why the packet could not be decoded, if it could not.
    public var reason: String?
    public var originalSize: Int
    public var compressedSize: Int
    public var receivedAtMs: Int64

    public init(
        id: Int64,
        deviceID: String,
        method: String,
        registerLayout: [Int],
        samples: [[UInt16]],
        sampleTimesMs: [Int64],
        lastSampleMs: Int64,
        approximate: Bool,
        reason: String?,
        originalSize: Int,
        compressedSize: Int,
        receivedAtMs: Int64
    ) {
        self.id = id
        self.deviceID = deviceID
        self.method = method
        self.registerLayout = registerLayout
        self.samples = samples
        self.sampleTimesMs = sampleTimesMs
        self.lastSampleMs = lastSampleMs
        self.approximate = approximate
        self.reason = reason
        self.originalSize = originalSize
        self.compressedSize = compressedSize
        self.receivedAtMs = receivedAtMs
    }

    /// The same fields from a freshly decoded packet.
    public init(id: Int64 = 0, deviceID: String, packet: DecodedPacket, receivedAtMs: Int64) {
        self.init(
            id: id,
            deviceID: deviceID,
            method: packet.method,
            registerLayout: packet.registerLayout,
            samples: packet.samples ?? [],
            sampleTimesMs: packet.samples == nil ? [] : packet.sampleTimesMs,
            lastSampleMs: packet.lastSampleEpochMs,
            approximate: packet.approximate,
            reason: packet.reason?.rawValue,
            originalSize: packet.originalSize,
            compressedSize: packet.compressedSize,
            receivedAtMs: receivedAtMs
        )
    }

    /// `compressed / original`, as the device reports sizes.
    public var ratio: Double { DecodedPacket.ratio(compressed: compressedSize, original: originalSize) }
}

extension TelemetryStore {
    /// The newest stored packets.
    public func packets(deviceID: String, limit: Int) async throws -> [PacketRow] {
        try await packets(deviceID: deviceID, before: nil, limit: limit)
    }
}
