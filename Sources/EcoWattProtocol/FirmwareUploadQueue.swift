/// The firmware's path from the sensor to an upload request, without I/O (spec §3.2, §3.6.4): the 50-sample buffer,
/// the compressor with its per-boot temporal state, and the 20-packet ring that a failed upload reorders.
///
/// All of it is RAM: create a fresh queue at every simulated boot. The simulator runs it against a live server; tests
/// replay its requests in the exact order a field device sends them.
public struct FirmwareUploadQueue: Sendable {
    public struct Sample: Sendable, Equatable {
        public var values: [UInt16]
        public var layout: [Int]
        /// The stamp the firmware stores: whole seconds × 1000 of epoch time (or of `millis()` before NTP), cut to 32 bits.
        public var timestamp: UInt32

        public init(values: [UInt16], layout: [Int], timestamp: UInt32) {
            self.values = values
            self.layout = layout
            self.timestamp = timestamp
        }
    }

    /// Samples the sensor task keeps between two upload periods (the oldest is overwritten beyond it).
    public static let sampleCapacity = 50
    /// Packets waiting for upload (the oldest is dropped beyond it).
    public static let packetCapacity = 20

    public private(set) var samples: [Sample] = []
    /// Packets in upload order: a failed upload's packets go behind the ones it did not drain.
    public private(set) var packets: [UploadBuilder.Packet] = []
    public private(set) var compressor = SmartCompressor()
    private var newSample = false

    public init() {}

    /// A sensor read; returns how many samples were overwritten (0 or 1).
    @discardableResult
    public mutating func record(_ sample: Sample) -> Int {
        samples.append(sample)
        newSample = true
        guard samples.count > Self.sampleCapacity else { return 0 }
        samples.removeFirst()
        return 1
    }

    /// The start of an upload period: the samples taken since the last one become a packet (the layout of the first
    /// sample labels them all). Returns the new packet and the old packets the full ring dropped; `nil` when no sample
    /// was taken in the period (then the firmware does not upload at all, not even its backlog).
    public mutating func batch() -> (packet: UploadBuilder.Packet, dropped: [UploadBuilder.Packet])? {
        guard newSample, let first = samples.first, let last = samples.last else { return nil }
        newSample = false
        let values = samples.flatMap(\.values)
        let selection = (0..<values.count).map { first.layout[$0 % first.layout.count] }
        let blob = compressor.compress(values, selection: selection)
        let packet = UploadBuilder.Packet(blob: blob, registerLayout: first.layout, sampleCount: samples.count, timestamp: last.timestamp)
        samples = []
        packets.append(packet)
        return (packet, dropOverflow())
    }

    /// The packets of this period's request: the first (at most 8) of the ring, taken out of it.
    public mutating func drain() -> [UploadBuilder.Packet] {
        let drained = Array(packets.prefix(UploadBuilder.maxPacketsPerUpload))
        packets.removeFirst(drained.count)
        return drained
    }

    /// The request failed (both attempts): its packets go back behind the ones that were not drained, which reorders
    /// them, and the ring drops its oldest beyond 20. Returns the packets dropped.
    @discardableResult
    public mutating func pushBack(_ drained: [UploadBuilder.Packet]) -> [UploadBuilder.Packet] {
        packets += drained
        return dropOverflow()
    }

    private mutating func dropOverflow() -> [UploadBuilder.Packet] {
        let dropped = Array(packets.prefix(max(0, packets.count - Self.packetCapacity)))
        packets.removeFirst(dropped.count)
        return dropped
    }

    /// Readings not delivered yet: in the sample buffer, and in the packets waiting in the ring.
    public var samplesWaiting: Int { samples.count + packets.reduce(0) { $0 + $1.sampleCount } }
}
