import EcoWattProtocol

/// A field device as the decoder meets it: the firmware's sensor and upload path (``FirmwareUploadQueue``) on a clock,
/// with NTP that may sync late, a Modbus read time, upload outages, lost responses and reboots. It records what it
/// read, so that a test can check every stored sample against the reading.
public struct FieldDevice {
    public struct Upload: Sendable {
        public var payload: UploadPayload
        /// The inner JSON as the firmware serialised it.
        public var inner: String
        public var arrivalMs: Int64
        public var nonce: UInt32
    }

    public struct Reading: Sendable {
        public var values: [UInt16]
        public var layout: [Int]
        public var timeMs: Int64
    }

    public var queue = FirmwareUploadQueue()
    public var nowMs: Int64 = 1_764_300_000_000
    public var bootMs: Int64 = 1_764_300_000_000
    /// NTP syncs at this time; before it the device stamps with `millis()` and reports its uptime.
    public var syncMs: Int64 = 0
    public var intervalMs: Int64 = 15_000
    /// What uploads report as `sampling_interval` (after a change the new value, also for samples taken before it).
    public var reportedInterval = 15
    public var uploadMs: Int64 = 15_000
    public var readMs: Int64 = 150
    public var layout = [0, 1, 9]
    public var nonce: UInt32 = 11_000
    /// Upload attempts in these windows fail (an outage): the device retries once, then pushes its packets back.
    public var outages: [ClosedRange<Int64>] = []
    /// Accepted uploads whose 200 the device never sees (it re-sends the same packets under a new nonce).
    public var lostResponses: Set<UInt32> = []
    /// Every reading, by batch: the packet stamp and sample count identify the batch.
    public private(set) var batches: [String: [Reading]] = [:]
    public private(set) var readings = 0
    private var step = 0
    private var nextRead: Int64 = 0
    private var nextUpload: Int64 = 0

    private var booted = false

    /// The device boots at `ms`, when it first runs (after the test has set its intervals).
    public init(at ms: Int64 = 1_764_300_000_000) {
        nowMs = ms
        bootMs = ms
    }

    public var synced: Bool { nowMs >= syncMs }

    /// The firmware's `millis()` at epoch time `ms`: 32 bits since boot.
    public func millis(_ ms: Int64) -> Int64 { (ms - bootMs) & 0xFFFF_FFFF }

    public var batchCount: Int { batches.count }

    /// A (re)boot: RAM is lost; every task waits one full period before its first run.
    public mutating func boot() {
        booted = true
        queue = FirmwareUploadQueue()
        bootMs = nowMs
        nextRead = nowMs + intervalMs
        nextUpload = nowMs + uploadMs
    }

    public static func key(_ packet: UploadBuilder.Packet) -> String { "\(packet.timestamp)/\(packet.sampleCount)" }
    public static func key(_ packet: DecodedPacket) -> String {
        "\(UInt32(truncatingIfNeeded: packet.lastSampleEpochMs))/\(packet.sampleCount)"
    }

    /// Runs until `endMs`; returns the accepted uploads in the order they reached the server.
    public mutating func run(until endMs: Int64) -> [Upload] {
        var uploads: [Upload] = []
        if !booted {
            let boot = bootMs
            self.boot()
            bootMs = boot  // a test may have set an earlier boot (a long uptime)
        }
        while min(nextRead, nextUpload) <= endMs {
            if nextRead <= nextUpload {
                nowMs = nextRead + readMs
                step += 1
                let values = layout.map { UInt16(2000 + $0 * 100 + (step * 7 + $0 * 3) % 23) }
                let stamp = UInt32(truncatingIfNeeded: (synced ? nowMs : millis(nowMs)) / 1000 * 1000)
                queue.record(.init(values: values, layout: layout, timestamp: stamp))
                pending.append(Reading(values: values, layout: layout, timeMs: nowMs))
                readings += 1
                nextRead = nowMs + intervalMs
            } else {
                nowMs = nextUpload
                nextUpload = nowMs + uploadMs
                guard let (packet, _) = queue.batch() else { continue }
                batches[Self.key(packet)] = Array(pending.suffix(packet.sampleCount))
                pending = []
                uploads += attempt()
            }
        }
        nowMs = endMs
        return uploads
    }

    private var pending: [Reading] = []

    private mutating func attempt() -> [Upload] {
        let drained = queue.drain()
        var reached: [Upload] = []
        for retry in 0..<2 {
            let at = nowMs + Int64(retry) * 300
            let seconds = (synced ? at : millis(at)) / 1000
            let inner = UploadBuilder.innerJSON(
                deviceID: "FIELD",
                timestamp: UInt64(seconds),
                samplingInterval: reportedInterval,
                packets: drained
            )
            guard inner.utf8.count < UploadBuilder.maxInnerJSONBytes else { break }
            nonce += 1
            if outages.contains(where: { $0.contains(at) }) { continue }
            reached.append(
                Upload(payload: try! UploadPayload(parsing: Array(inner.utf8)), inner: inner, arrivalMs: at + 20, nonce: nonce)
            )
            // A lost 200: stored by the server, a failure for the device.
            if !lostResponses.contains(nonce) { return reached }
        }
        queue.pushBack(drained)
        return reached
    }

    /// The readings of the batch a stored packet holds: by its stamp, or (for a time estimated from the arrival) the
    /// batch of the same size whose last reading is closest.
    public func truth(for packet: DecodedPacket) -> [Reading]? {
        if !packet.timeEstimated, let exact = batches[Self.key(packet)] { return exact }
        return batches.values.filter { $0.count == packet.sampleCount }
            .min { abs($0.last!.timeMs - packet.lastSampleEpochMs) < abs($1.last!.timeMs - packet.lastSampleEpochMs) }
    }
}

/// The server's side of the replay: the decoder with the nonce rule of ingest, and what it stored.
public struct DecodingServer {
    public var state = DeviceStreamState()
    public var lastNonce: UInt32?
    /// Stored packets by serial.
    public var stored: [Int64: DecodedPacket] = [:]
    public var resends = 0

    public init() {}

    public mutating func receive(_ upload: FieldDevice.Upload) {
        let failed: UInt32? =
            lastNonce.map { upload.nonce - $0 - 1 } ?? (upload.nonce >= 11_001 ? upload.nonce - 11_001 : nil)
        lastNonce = upload.nonce
        let result = DeviceStreamDecoder.decode(upload.payload, arrivalMs: upload.arrivalMs, failedAttempts: failed, state: &state)
        for packet in result.packets {
            if packet.resend {
                resends += 1
            } else {
                stored[packet.serial] = packet
            }
        }
        for update in result.updates {
            if let rows = update.samples {
                stored[update.serial]?.samples = rows
                stored[update.serial]?.reason = nil
            }
            stored[update.serial]?.sampleTimesMs = update.sampleTimesMs
        }
    }

    public mutating func bootSignal(atMs: Int64) { state.bootSignal(atMs: atMs) }

    /// Stored packets in time order.
    public var packets: [DecodedPacket] { stored.values.sorted { $0.lastSampleEpochMs < $1.lastSampleEpochMs } }
}
