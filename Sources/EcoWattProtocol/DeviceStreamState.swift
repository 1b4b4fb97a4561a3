/// One model of a device's temporal encoder, and how far it can be trusted.
public struct TemporalModel: Sendable, Equatable {
    public var context = TemporalContext()
    /// The model has seen every batch since its start, in order, exactly: its write index, buffer-full flag and last
    /// layout follow the device's encoder.
    public var trusted = true
    /// Device time (epoch ms when synced, else `millis()`) of the newest sample this model has seen.
    public var lastSampleDeviceMs: Int64?

    public init() {}

    /// True when the device's encoder, if it is this model, could have written a 0x71 blob for `selection`.
    func isCompatible(with selection: [Int]) -> Bool {
        trusted && context.isCompatible(with: selection)
    }

    /// The firmware's update after a batch.
    public mutating func update(values: [UInt16], selection: [Int]) {
        context.update(values: values, selection: selection)
    }
}

/// Per-device decoding state: the firmware encoder model, and, after an (unsigned) boot signal, a second model for the
/// hypothesis that the device rebooted then (issue 14).
///
/// The temporal (0x71) encoder state depends on every batch the device compressed since boot. ``current`` is trusted
/// only while the server has seen each batch, in order, decoded exactly. It becomes untrusted after a lossy (0x50),
/// truncated or undecodable packet, a packet older than one already seen (reordered backlog), or a gap in sample time
/// larger than `2 × interval + 8 s` when the upload's nonce shows failed attempts before it (a batch the device can have
/// lost in its 20-slot ring; without failed attempts such a gap is a late sensor read).
///
/// A boot signal (registration, boot report) is not authenticated, so it never discards ``current``: it starts
/// ``bootCandidate`` from the zeroed state a rebooted encoder has, and both models follow every batch. Signed uploads
/// decide between them: a 0x71 blob that only one model could have produced (a freshly booted encoder cannot write one
/// before its buffer is full), an unsynced clock that restarted, or agreement (both predict the same values). Only a
/// boot signal from the device's bound address, or one confirmed by a verified upload from the address it came from,
/// opens a candidate, so when both models fit and disagree the reboot is the better explanation and the candidate
/// wins. A forged boot signal therefore costs nothing, and a real reboot still gives a fresh model.
public struct DeviceStreamState: Sendable, Equatable {
    /// The model under the hypothesis that the device did not reboot since it started.
    public var current = TemporalModel()
    /// The model under the hypothesis that the device rebooted at the last boot signal; `nil` when none is open.
    public var bootCandidate: TemporalModel?
    /// Sampling interval (s) announced with the newest packet.
    public var lastIntervalSeconds: Int?

    public init() {}

    /// Slack added to the lost-batch gap rule: Modbus retries can delay one sample by up to ~7 s (spec §6.2).
    public static let gapSlackMs: Int64 = 8_000

    public var context: TemporalContext { current.context }
    public var trusted: Bool { current.trusted }

    /// A boot signal: opens the reboot hypothesis (a zeroed encoder) beside the current model.
    public mutating func bootSignal() {
        bootCandidate = TemporalModel()
    }

    /// A signed upload shows that the device rebooted at the boot signal: the candidate becomes the model.
    mutating func adoptBootCandidate() {
        guard let candidate = bootCandidate else { return }
        current = candidate
        bootCandidate = nil
    }
}

extension DeviceStreamState {
    /// Compact binary form for persistence (format 2, 376 bytes, little-endian).
    public var serialized: [UInt8] {
        var out: [UInt8] = [2]
        out.reserveCapacity(376)
        Self.write(current, into: &out)
        withUnsafeBytes(of: Int64(lastIntervalSeconds ?? -1).littleEndian) { out.append(contentsOf: $0) }
        out.append(bootCandidate == nil ? 0 : 1)
        Self.write(bootCandidate ?? TemporalModel(), into: &out)
        return out
    }

    /// Restores ``serialized`` (format 2, or format 1 written before boot candidates existed); `nil` for others.
    public init?(serialized bytes: [UInt8]) {
        var reader = Reader(bytes: bytes)
        switch (bytes.count, bytes.first) {
        case (192, 1):
            // Format 1: context, trusted, last sample, interval.
            reader.offset = 1
            current.context = reader.context()
            current.trusted = reader.byte() != 0
            let hasLast = reader.byte() != 0
            let last = reader.int64()
            current.lastSampleDeviceMs = hasLast ? last : nil
        case (376, 2):
            reader.offset = 1
            current = reader.model()
            let interval = reader.int64()
            lastIntervalSeconds = interval >= 0 ? Int(interval) : nil
            let hasCandidate = reader.byte() != 0
            let candidate = reader.model()
            bootCandidate = hasCandidate ? candidate : nil
            return
        default:
            return nil
        }
        let interval = reader.int64()
        lastIntervalSeconds = interval >= 0 ? Int(interval) : nil
    }

    static func write(_ model: TemporalModel, into out: inout [UInt8]) {
        for value in model.context.rows {
            out.append(UInt8(value & 0xFF))
            out.append(UInt8(value >> 8))
        }
        out.append(contentsOf: model.context.lastRegisters)
        out += [model.context.lastRegisterCount, model.context.writeIndex, model.context.bufferFull, model.trusted ? 1 : 0]
        out.append(model.lastSampleDeviceMs == nil ? 0 : 1)
        withUnsafeBytes(of: (model.lastSampleDeviceMs ?? 0).littleEndian) { out.append(contentsOf: $0) }
    }

    private struct Reader {
        let bytes: [UInt8]
        var offset = 0

        mutating func byte() -> UInt8 {
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func uint64(_ width: Int) -> UInt64 {
            defer { offset += width }
            return (0..<width).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
        }

        mutating func int64() -> Int64 { Int64(bitPattern: uint64(8)) }

        mutating func context() -> TemporalContext {
            var context = TemporalContext()
            for index in 0..<80 { context.rows[index] = UInt16(uint64(2)) }
            context.lastRegisters = (0..<10).map { _ in byte() }
            context.lastRegisterCount = byte()
            context.writeIndex = byte() % 8
            context.bufferFull = byte()
            return context
        }

        mutating func model() -> TemporalModel {
            var model = TemporalModel()
            model.context = context()
            model.trusted = byte() != 0
            let hasLast = byte() != 0
            let last = int64()
            model.lastSampleDeviceMs = hasLast ? last : nil
            return model
        }
    }
}
