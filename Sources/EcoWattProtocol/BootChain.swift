/// One packet of a device's current boot, as far as ordering, the temporal model and sample times need it.
public struct ChainEntry: Sendable, Equatable {
    public enum Content: Sendable, Equatable {
        /// Decoded exactly. The firmware's encoder update keeps, per register, the newest value of a batch, so the last
        /// sample is all a model needs to follow it.
        case exact(lastRow: [UInt16])
        /// A 0x71 blob waiting for a model that reaches it.
        case pending(blob: [UInt8])
        /// Lossy (0x50), cut or undecodable: the encoder state after it is not known.
        case lost
    }

    /// Device-scoped packet number: how the store finds the packet when a later upload decodes or re-times it.
    public var serial: Int64
    /// Last sample time, epoch ms (estimated when the device clock was not synced).
    public var timeMs: Int64
    public var sampleCount: Int
    public var layout: [Int]
    /// `sampling_interval` of the upload that carried it.
    public var intervalSeconds: Int
    public var content: Content
    /// Samples stored with values (0 for an undecodable packet, fewer than `sampleCount` for a cut one).
    public var storedSamples: Int
    /// Arrived while the device's backlog may have been reordered or cut: a batch may be missing right before it.
    public var inDisorder: Bool
    /// A batch is known to be missing right before it (given up).
    public var holeBefore = false
    public var timeEstimated: Bool
    /// The entry its stored sample times are spread after (`nil`: spaced by the nominal interval).
    public var timedAfter: Int64?

    public init(
        serial: Int64,
        timeMs: Int64,
        sampleCount: Int,
        layout: [Int],
        intervalSeconds: Int,
        content: Content,
        storedSamples: Int,
        inDisorder: Bool,
        timeEstimated: Bool
    ) {
        self.serial = serial
        self.timeMs = timeMs
        self.sampleCount = sampleCount
        self.layout = layout
        self.intervalSeconds = intervalSeconds
        self.content = content
        self.storedSamples = storedSamples
        self.inDisorder = inDisorder
        self.timeEstimated = timeEstimated
    }

    /// The firmware's per-value register selection of this batch.
    var selection: [Int] { (0..<layout.count * sampleCount).map { layout[$0 % layout.count] } }
}

/// "The device's encoder started at `startSerial`": the established boot, or a reboot a device announced.
public struct BootHypothesis: Sendable, Equatable {
    /// Entries with a larger serial belong to this boot.
    public var startSerial: Int64
    /// When the device announced the reboot (`nil` for the established boot, whose start is not known).
    public var startTimeMs: Int64?
    /// The encoder state after the entries folded in so far.
    public var context = TemporalContext()
    /// The last entry folded into ``context`` (kept when the entry itself was trimmed).
    public var frontier: Int64?
    public var frontierTimeMs: Int64?
    public var frontierInterval: Int?
    /// The model cannot follow the encoder any further this boot (a lost, lossy or cut batch before the frontier).
    public var broken = false

    public init(startSerial: Int64, startTimeMs: Int64?) {
        self.startSerial = startSerial
        self.startTimeMs = startTimeMs
    }

    mutating func fold(_ entry: ChainEntry, lastRow: [UInt16]) {
        let selection = entry.selection
        context.update(values: Array(repeating: 0, count: selection.count - lastRow.count) + lastRow, selection: selection)
        frontier = entry.serial
        frontierTimeMs = entry.timeMs
        frontierInterval = entry.intervalSeconds
    }
}

/// Whether a batch can be missing between two known points of a boot.
enum ChainGap: Equatable {
    case contiguous
    /// A batch may be missing: it can still arrive (the backlog is being re-sent) or be given up.
    case suspect
}

extension DeviceStreamState {
    /// Whether a batch can be missing between `previous` (a packet's last sample or a boot start) and `entry`: only when
    /// a sample fits between them (samples are at least one interval apart, stamps cut to whole seconds) and the entry
    /// arrived while the device's backlog may have been reordered or cut.
    static func gap(before entry: ChainEntry, after previous: Int64?, previousInterval: Int?) -> ChainGap {
        guard entry.inDisorder else { return .contiguous }
        guard let previous else { return .suspect }
        let interval = Int64(max(1, min(entry.intervalSeconds, previousInterval ?? entry.intervalSeconds)))
        let room = entry.timeMs - previous >= Int64(entry.sampleCount + 1) * interval * 1000 - 1000
        return room ? .suspect : .contiguous
    }

    /// Index of the next entry `hypothesis` has not folded, if any.
    func nextIndex(of hypothesis: BootHypothesis) -> Int? {
        let from: Int
        if let frontier = hypothesis.frontier, let index = entries.firstIndex(where: { $0.serial == frontier }) {
            from = index + 1
        } else if let time = hypothesis.frontierTimeMs {
            from = entries.firstIndex { $0.timeMs > time } ?? entries.count
        } else {
            from = 0
        }
        return entries[from...].firstIndex { $0.serial > hypothesis.startSerial }
    }

    func gap(_ hypothesis: BootHypothesis, before entry: ChainEntry) -> ChainGap {
        guard hypothesis.frontier != nil || hypothesis.frontierTimeMs != nil else {
            return Self.gap(before: entry, after: hypothesis.startTimeMs, previousInterval: nil)
        }
        return Self.gap(before: entry, after: hypothesis.frontierTimeMs, previousInterval: hypothesis.frontierInterval)
    }

    /// Puts a new packet in its place in time. A boot whose model already went past that time did not see the batches
    /// in the order it assumed: it cannot follow the encoder any further.
    mutating func insert(_ entry: ChainEntry) {
        for index in hypotheses.indices where entry.serial > hypotheses[index].startSerial {
            if let frontier = hypotheses[index].frontierTimeMs, entry.timeMs <= frontier { hypotheses[index].broken = true }
        }
        let position = entries.firstIndex { ($0.timeMs, $0.serial) > (entry.timeMs, entry.serial) } ?? entries.count
        entries.insert(entry, at: position)
    }

    /// Folds every entry each boot hypothesis can reach into its model and decides the waiting 0x71 packets, until
    /// nothing changes. Returns the values of the 0x71 packets decoded, by serial.
    /// - Parameter finalizing: the device's backlog has been delivered: a batch still missing is lost for good.
    mutating func settle(finalizing: Bool) -> [Int64: [UInt16]] {
        var decoded: [Int64: [UInt16]] = [:]
        var progress = true
        while progress {
            progress = false
            for index in hypotheses.indices where !hypotheses[index].broken {
                progress = advance(index, finalizing: finalizing) || progress
            }
            for index in entries.indices {
                guard case .pending(let blob) = entries[index].content else { continue }
                switch decide(index, blob: blob) {
                case .wait: continue
                case .decoded(let values, let layout):
                    let rows = values.count / max(1, layout.count)
                    entries[index].content = .exact(lastRow: Array(values.suffix(layout.count)))
                    entries[index].storedSamples = rows
                    decoded[entries[index].serial] = values
                case .undecodable:
                    entries[index].content = .lost
                }
                progress = true
                break
            }
        }
        return decoded
    }

    /// Folds what the hypothesis can reach; true if it moved.
    private mutating func advance(_ index: Int, finalizing: Bool) -> Bool {
        var moved = false
        while let next = nextIndex(of: hypotheses[index]) {
            let entry = entries[next]
            if gap(hypotheses[index], before: entry) == .suspect {
                if finalizing {
                    hypotheses[index].broken = true
                    moved = true
                }
                return moved
            }
            switch entry.content {
            case .exact(let lastRow):
                hypotheses[index].fold(entry, lastRow: lastRow)
                moved = true
            case .lost:
                hypotheses[index].broken = true
                return true
            case .pending:
                return moved
            }
        }
        return moved
    }

    enum Decision {
        case wait
        case decoded([UInt16], layout: [Int])
        case undecodable
    }

    /// A 0x71 packet against the boots it may belong to, the latest announced first. The device's encoder was
    /// compatible when it wrote the blob, so a boot whose model reaches the packet and is not compatible is disproved
    /// (a freshly booted encoder is not compatible before its buffer is full). The latest boot that is not disproved
    /// decides: compatible, it decodes the packet and becomes the established boot (a reboot the device announced
    /// explains more than one that did not happen); not reached yet, the packet waits; never reachable, it stays raw.
    private mutating func decide(_ index: Int, blob: [UInt8]) -> Decision {
        let entry = entries[index]
        let selection = entry.selection
        let candidates = hypotheses.indices.filter { entry.serial > hypotheses[$0].startSerial }.reversed()
        var disproved: [Int] = []
        defer {
            // Every boot disproved, the latest stays as the (broken) established one.
            if disproved.count == candidates.count, let latest = disproved.first {
                hypotheses[latest].broken = true
                disproved.removeFirst()
            }
            for dropped in disproved.sorted(by: >) { hypotheses.remove(at: dropped) }
        }
        for candidate in candidates {
            let hypothesis = hypotheses[candidate]
            if hypothesis.broken { return .undecodable }
            guard nextIndex(of: hypothesis) == index, gap(hypothesis, before: entry) == .contiguous else { return .wait }
            guard hypothesis.context.isCompatible(with: selection) else {
                disproved.append(candidate)
                continue
            }
            guard let values = try? TemporalDecoder.decodeDelta(blob, selection: selection, context: hypothesis.context) else {
                return .undecodable
            }
            // Established: the boots announced before it did not happen as assumed (or were this one's predecessors).
            hypotheses.removeAll { $0.startSerial < hypothesis.startSerial }
            disproved = []
            return .decoded(values, layout: entry.layout)
        }
        return .undecodable
    }
}
