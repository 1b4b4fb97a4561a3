import EcoWattProtocol

/// One packet as a ``TelemetryChunk`` keeps it: what `GET /packets/{id}`, the historical queries and the MQTT feed
/// read back.
public struct ChunkPacket: Sendable, Equatable {
    public var nonce: UInt32
    public var packetIndex: Int
    public var marker: UInt8?
    public var method: String
    public var sampleCount: Int
    public var lastSampleMs: Int64
    public var receivedAtMs: Int64
    public var approximate = false
    public var truncated = false
    public var timeEstimated = false
    public var reason: String?
    public var detail: String?
    /// The blob as received, kept while the packet is undecoded or was cut on the wire.
    public var blob: [UInt8]?
    public var compressedSize: Int
    public var originalSize: Int
    /// The decoder's device-scoped number (`nil` for packets stored before issue 15).
    public var serial: Int64?
    /// Decoded rows in layout order (`nil`: undecodable), and the time of each.
    public var samples: [[UInt16]]?
    public var sampleTimesMs: [Int64] = []

    public init(
        nonce: UInt32,
        packetIndex: Int,
        marker: UInt8?,
        method: String,
        sampleCount: Int,
        lastSampleMs: Int64,
        receivedAtMs: Int64,
        compressedSize: Int,
        originalSize: Int
    ) {
        self.nonce = nonce
        self.packetIndex = packetIndex
        self.marker = marker
        self.method = method
        self.sampleCount = sampleCount
        self.lastSampleMs = lastSampleMs
        self.receivedAtMs = receivedAtMs
        self.compressedSize = compressedSize
        self.originalSize = originalSize
    }

    /// A freshly decoded packet of an upload received at `receivedAtMs` with `nonce`.
    public init(_ packet: DecodedPacket, nonce: UInt32, receivedAtMs: Int64) {
        self.init(
            nonce: nonce,
            packetIndex: packet.index,
            marker: packet.marker,
            method: packet.method,
            sampleCount: packet.sampleCount,
            lastSampleMs: packet.lastSampleEpochMs,
            receivedAtMs: receivedAtMs,
            compressedSize: packet.compressedSize,
            originalSize: packet.originalSize
        )
        approximate = packet.approximate
        truncated = packet.truncated
        timeEstimated = packet.timeEstimated
        reason = packet.reason?.rawValue
        detail = packet.detail
        blob = !packet.isDecoded || packet.truncated ? packet.blob : nil
        serial = packet.serial
        samples = packet.samples
        sampleTimesMs = packet.samples == nil ? [] : packet.sampleTimesMs
    }

    /// Earliest and latest time the packet is found by: its samples' and its last-sample stamp.
    public var timeRange: ClosedRange<Int64> {
        let low = min(sampleTimesMs.min() ?? lastSampleMs, lastSampleMs)
        return low...max(sampleTimesMs.max() ?? lastSampleMs, lastSampleMs)
    }

    /// `compressed / original`, as the device reports sizes.
    public var ratio: Double { DecodedPacket.ratio(compressed: compressedSize, original: originalSize) }

    /// A later upload decoded this packet (issue 15): it keeps the rows, drops the raw blob and the reason.
    public mutating func complete(with update: StreamUpdate) {
        if let rows = update.samples {
            samples = rows
            reason = nil
            detail = nil
            blob = nil
        }
        guard samples != nil else { return }
        sampleTimesMs = update.sampleTimesMs
        timeEstimated = update.timeEstimated
    }
}

/// Up to ``maxPackets`` consecutive packets of one device with one register layout, stored as one compact blob
/// (issue 17).
///
/// A row per sample cost 114 bytes and a row per packet 126 more (`BENCHMARKS.md`): every row repeated the device, the
/// layout, the method and the values as text, and each row and index entry carries SQLite's own overhead. A chunk
/// stores the device and layout once and every number as a varint of its difference to the one before (values per
/// register column, across packets too; times as the step of a steady sampling interval), so a typical packet of
/// 3 × 6 registers takes about 25 bytes. Packets are never reordered or removed inside a chunk: a packet's place in
/// it is stable (the MQTT outbox and late decoding find it by chunk and place).
public struct TelemetryChunk: Sendable, Equatable {
    /// Places in a chunk (the place is the low byte of a packet id).
    public static let maxPackets = 255
    /// A chunk takes no more packets once its blob is this long (it stays within one 4 KiB SQLite page, and the
    /// rewrite per upload stays short).
    public static let maxBytes = 1_800
    /// A chunk takes no packet that would make it span more than this (sample time or arrival), so that a time range
    /// reads few chunks and retention drops whole chunks at about the age it is set to.
    public static let maxSpanMs: Int64 = 3_600_000

    public var layout: [Int]
    public var packets: [ChunkPacket]

    public init(layout: [Int], packets: [ChunkPacket] = []) {
        self.layout = layout
        self.packets = packets
    }

    /// Earliest and latest time of any packet (see ``ChunkPacket/timeRange``); `nil` when empty.
    public var timeRange: ClosedRange<Int64>? {
        guard let first = packets.first?.timeRange else { return nil }
        return packets.dropFirst().reduce(first) { min($0.lowerBound, $1.timeRange.lowerBound)...max($0.upperBound, $1.timeRange.upperBound) }
    }

    /// When the first packet arrived (retention drops a chunk by it).
    public var createdMs: Int64? { packets.first?.receivedAtMs }

    /// Whether `packet` (of `layout`) may join this chunk, whose blob is `encodedSize` bytes long.
    public func accepts(_ packet: ChunkPacket, layout: [Int], encodedSize: Int) -> Bool {
        guard layout == self.layout, packets.count < Self.maxPackets, encodedSize < Self.maxBytes,
            let range = timeRange, let created = createdMs
        else { return false }
        let low = min(range.lowerBound, packet.timeRange.lowerBound)
        let high = max(range.upperBound, packet.timeRange.upperBound)
        return Self.within(low, high) && packet.receivedAtMs >= created && Self.within(created, packet.receivedAtMs)
    }

    /// `high - low <= maxSpanMs` without overflow (times come from devices).
    private static func within(_ low: Int64, _ high: Int64) -> Bool {
        let (span, overflow) = high.subtractingReportingOverflow(low)
        return !overflow && span <= maxSpanMs
    }
}
