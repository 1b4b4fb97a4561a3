import EcoWattProtocol

/// How stored telemetry chunks are read, the same for every backend that stores ``TelemetryChunk`` blobs (SQLite,
/// PostgreSQL): packet ids, the rows of a packet, and the selections of the history queries over chunks.
public enum ChunkReading {
    /// A packet's id: its chunk's id shifted left by 8, plus its place in the chunk.
    public static func packetID(chunk: Int64, place: Int) -> Int64 { chunk << 8 | Int64(place) }
    public static func split(_ packetID: Int64) -> (chunk: Int64, place: Int) { (packetID >> 8, Int(packetID & 0xFF)) }

    /// One stored chunk with its id and device.
    public struct Stored: Sendable {
        public var id: Int64
        public var deviceID: String
        public var chunk: TelemetryChunk

        public init(id: Int64, deviceID: String, chunk: TelemetryChunk) {
            self.id = id
            self.deviceID = deviceID
            self.chunk = chunk
        }

        /// The packets of the chunk as rows, newest first, those with an id below `before` when it is given.
        public func packetRows(before: Int64?) -> [PacketRow] {
            chunk.packets.enumerated().reversed().compactMap { place, packet in
                let id = ChunkReading.packetID(chunk: self.id, place: place)
                if let before, id >= before { return nil }
                return PacketRow(packet, id: id, device: deviceID, layout: chunk.layout)
            }
        }

        /// The packet at `place` as the MQTT feed publishes it (`nil` when retention dropped it).
        public func outboxPacket(id: Int64, place: Int) -> OutboxPacket? {
            guard place < chunk.packets.count else { return nil }
            let packet = chunk.packets[place]
            return OutboxPacket(
                id: id,
                deviceID: deviceID,
                method: packet.method,
                registerLayout: chunk.layout,
                samples: packet.samples ?? [],
                sampleTimesMs: packet.samples == nil ? [] : packet.sampleTimesMs,
                lastSampleMs: packet.lastSampleMs,
                approximate: packet.approximate,
                reason: packet.reason,
                originalSize: packet.originalSize,
                compressedSize: packet.compressedSize,
                receivedAtMs: packet.receivedAtMs
            )
        }
    }

    /// The samples in `[fromMs, toMs]`, oldest first, at most `limit`, from chunks offered by their earliest time.
    /// Samples of one time keep the order they were stored in (packet id, then row).
    public struct SampleSelection {
        let fromMs: Int64
        let toMs: Int64
        let limit: Int
        private var found: [(sample: SampleRow, packet: Int64, row: Int)] = []

        public init(fromMs: Int64, toMs: Int64, limit: Int) {
            self.fromMs = fromMs
            self.toMs = toMs
            self.limit = limit
        }

        /// Whether nothing can be found (an empty range or no room).
        public var isEmpty: Bool { limit <= 0 || fromMs > toMs }

        /// Whether a chunk whose earliest time is `firstMs` can still add a sample: chunks come by their earliest time,
        /// so once `limit` samples are found, one starting after the limit-th earliest of them adds nothing.
        public mutating func wants(firstMs: Int64) -> Bool {
            guard found.count >= limit else { return true }
            settle()
            return firstMs <= found[limit - 1].sample.timestampMs
        }

        public mutating func add(_ stored: Stored) {
            for (place, packet) in stored.chunk.packets.enumerated() {
                let id = ChunkReading.packetID(chunk: stored.id, place: place)
                for (row, sample) in SampleRow.rows(of: packet, device: stored.deviceID, layout: stored.chunk.layout).enumerated()
                where (fromMs...toMs).contains(sample.timestampMs) {
                    found.append((sample, id, row))
                }
            }
        }

        public mutating func result() -> [SampleRow] {
            settle()
            return found.map(\.sample)
        }

        private mutating func settle() {
            found.sort { ($0.sample.timestampMs, $0.packet, $0.row) < ($1.sample.timestampMs, $1.packet, $1.row) }
            if found.count > limit { found.removeLast(found.count - limit) }
        }
    }

    /// The newest sample of a device from its chunks offered by their latest time, newest first; of samples of one
    /// time, the one stored last (chunk id, then place in the chunk).
    public struct LatestSample {
        private var best: (sample: SampleRow, chunk: Int64)?

        public init() {}

        /// Whether a chunk whose latest time is `lastMs` can hold a newer sample than the best so far.
        public func wants(lastMs: Int64) -> Bool { best.map { lastMs >= $0.sample.timestampMs } ?? true }

        public mutating func add(_ stored: Stored) {
            for packet in stored.chunk.packets {
                for sample in SampleRow.rows(of: packet, device: stored.deviceID, layout: stored.chunk.layout) {
                    if let current = best, (sample.timestampMs, stored.id) < (current.sample.timestampMs, current.chunk) { continue }
                    best = (sample, stored.id)
                }
            }
        }

        public var sample: SampleRow? { best?.sample }
    }
}

extension SampleRow {
    /// The samples of a stored packet.
    public static func rows(of packet: ChunkPacket, device: String, layout: [Int]) -> [SampleRow] {
        zip(packet.samples ?? [], packet.sampleTimesMs).map { values, time in
            SampleRow(
                deviceID: device,
                timestampMs: time,
                registerLayout: layout,
                rawValues: values,
                method: packet.method,
                ratio: packet.ratio,
                approximate: packet.approximate,
                timeEstimated: packet.timeEstimated
            )
        }
    }
}

extension PacketRow {
    public init(_ packet: ChunkPacket, id: Int64, device: String, layout: [Int]) {
        self.init(
            id: id,
            deviceID: device,
            nonce: packet.nonce,
            packetIndex: packet.packetIndex,
            marker: packet.marker,
            method: packet.method,
            registerLayout: layout,
            sampleCount: packet.sampleCount,
            lastSampleMs: packet.lastSampleMs,
            decoded: packet.samples != nil,
            approximate: packet.approximate,
            truncated: packet.truncated,
            reason: packet.reason,
            blob: packet.blob,
            detail: packet.detail,
            serial: packet.serial,
            timeEstimated: packet.timeEstimated
        )
    }
}
