import Foundation

/// Per-device decoding state: the firmware encoder model plus what is needed to know whether it can be trusted.
///
/// The temporal (0x71) encoder state depends on every batch the device compressed since boot. The model is trusted
/// only while the server has seen each batch, in order, decoded exactly. It becomes untrusted after a lossy (0x50),
/// truncated or undecodable packet, a packet older than one already seen (reordered backlog), or a gap in sample
/// time larger than `2 × interval + 8 s` (a batch the device lost in its 20-slot ring); only a boot signal resets it.
public struct DeviceStreamState: Sendable, Equatable {
    public var context = TemporalContext()
    public var trusted = true
    /// Device time (epoch ms when synced, else `millis()`) of the newest sample seen since boot.
    public var lastSampleDeviceMs: Int64?
    /// Sampling interval (s) announced with the newest packet.
    public var lastIntervalSeconds: Int?

    public init() {}

    /// Slack added to the lost-batch gap rule: Modbus retries can delay one sample by up to ~7 s (spec §6.2).
    public static let gapSlackMs: Int64 = 8_000

    /// Compact binary form for persistence (fixed 192 bytes, little-endian).
    public var serialized: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(192)
        out.append(1)  // format version
        for value in context.rows {
            out.append(UInt8(value & 0xFF))
            out.append(UInt8(value >> 8))
        }
        out.append(contentsOf: context.lastRegisters)
        out += [context.lastRegisterCount, context.writeIndex, context.bufferFull, trusted ? 1 : 0]
        out.append(lastSampleDeviceMs == nil ? 0 : 1)
        withUnsafeBytes(of: (lastSampleDeviceMs ?? 0).littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: Int64(lastIntervalSeconds ?? -1).littleEndian) { out.append(contentsOf: $0) }
        return out
    }

    /// Restores ``serialized``; `nil` for unknown formats.
    public init?(serialized bytes: [UInt8]) {
        guard bytes.count == 192, bytes[0] == 1 else { return nil }
        var offset = 1
        for index in 0..<80 {
            context.rows[index] = UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
            offset += 2
        }
        context.lastRegisters = Array(bytes[offset..<offset + 10])
        offset += 10
        context.lastRegisterCount = bytes[offset]
        context.writeIndex = bytes[offset + 1] % 8
        context.bufferFull = bytes[offset + 2]
        trusted = bytes[offset + 3] != 0
        let hasLast = bytes[offset + 4] != 0
        offset += 5
        func int64(at start: Int) -> Int64 {
            (0..<8).reduce(Int64(0)) { $0 | Int64(bytes[start + $1]) << (8 * Int64($1)) }
        }
        lastSampleDeviceMs = hasLast ? int64(at: offset) : nil
        let interval = int64(at: offset + 8)
        lastIntervalSeconds = interval >= 0 ? Int(interval) : nil
    }
}

/// Decodes the packets of one upload against a device's ``DeviceStreamState`` (spec §3.6.5).
public enum DeviceStreamDecoder {
    /// Latest arrival time the decoder works with (year 2100): later clocks are clamped to it.
    public static let maxArrivalMs: Int64 = 4_102_444_800_000
    /// Default sampling interval when the payload does not announce one.
    public static let defaultIntervalSeconds = 5

    /// Decodes every packet of `upload`, updating `state`. Never throws: problems become undecodable packets.
    /// - Parameter arrivalMs: server receive time, epoch milliseconds (anchors the 32-bit packet timestamps).
    public static func decode(
        _ upload: UploadPayload,
        arrivalMs: Int64,
        state: inout DeviceStreamState
    ) -> [DecodedPacket] {
        // The arrival time comes from the server's clock; clamped anyway so that no time arithmetic can overflow.
        let arrivalMs = min(max(arrivalMs, 0), maxArrivalMs)
        return upload.packets.enumerated().map { index, packet in
            decodePacket(packet, index: index, upload: upload, arrivalMs: arrivalMs, state: &state)
        }
    }

    /// The epoch-ms value ≡ `timestamp (mod 2^32)` closest to `referenceMs`.
    public static func reconstructEpochMs(_ timestamp: UInt32, near referenceMs: Int64) -> Int64 {
        let period: Int64 = 1 << 32
        let referenceMs = min(max(referenceMs, 0), maxArrivalMs)
        let base = referenceMs - (referenceMs & (period - 1)) + Int64(timestamp)
        return [base - period, base, base + period].min { abs($0 - referenceMs) < abs($1 - referenceMs) }!
    }

    static func decodePacket(
        _ packet: CompressedPacket,
        index: Int,
        upload: UploadPayload,
        arrivalMs: Int64,
        state: inout DeviceStreamState
    ) -> DecodedPacket {
        let blob = Data(base64Encoded: packet.compressedBinary).map(Array.init) ?? []
        // Every number below is range-checked before it is multiplied: packets may be built by hand (not only by
        // `CompressedPacket(json:)`), and the fleet key may be public, so none of them can be trusted.
        let intervalSeconds = max(
            1,
            upload.samplingInterval.flatMap { PacketLimits.samplingIntervalSeconds.contains($0) ? $0 : nil }
                ?? defaultIntervalSeconds
        )
        let uploadSeconds = upload.timestamp.flatMap { PacketLimits.uint32.contains($0) ? $0 : nil }
        let clockSynced = upload.clockSynced
        let registers = packet.registerCount
        let samples = packet.sampleCount
        let layout = packet.registerLayout
        let shapeValid =
            PacketLimits.registerCount.contains(registers) && PacketLimits.sampleCount(registers: registers).contains(samples)
            && layout.count == registers && layout.allSatisfy { PacketLimits.registerIDs.contains($0) }

        // Time: the device clock (for ordering) and the epoch time stored with the samples.
        let deviceMs: Int64
        let lastEpochMs: Int64
        if clockSynced {
            deviceMs = reconstructEpochMs(packet.timestamp, near: arrivalMs)
            lastEpochMs = deviceMs
        } else {
            deviceMs = Int64(packet.timestamp)
            let uploadMs = (uploadSeconds ?? 0) * 1000
            lastEpochMs = arrivalMs - max(0, uploadMs - Int64(packet.timestamp))
        }

        let declaredSize = packet.compressedSizeBytes.flatMap { PacketLimits.compressedSizeBytes.contains($0) ? $0 : nil }
        var result = DecodedPacket(
            index: index,
            marker: blob.first,
            method: CompressionMarker.methodLabel(declared: packet.method, marker: blob.first),
            registerLayout: layout.count <= PacketLimits.registerCount.upperBound ? layout : [],
            sampleCount: shapeValid ? samples : 0,
            samples: nil,
            sampleTimesMs: [],
            lastSampleEpochMs: lastEpochMs,
            approximate: false,
            truncated: blob.count < (declaredSize ?? blob.count),
            reason: nil,
            detail: nil,
            blob: blob,
            compressedSize: declaredSize ?? blob.count,
            originalSize: shapeValid ? 2 * registers * samples : 0
        )

        func fail(_ reason: UndecodableReason, _ detail: String) -> DecodedPacket {
            state.trusted = false
            result.reason = reason
            result.detail = detail
            return result
        }

        if let problem = packet.metadataProblem { return fail(.inconsistentMetadata, problem) }
        guard shapeValid else {
            return fail(
                .inconsistentMetadata,
                "register_count \(registers), sample_count \(samples), layout \(layout.prefix(12)) do not describe a batch"
            )
        }
        guard let first = blob.first else { return fail(.corruptBlob, "empty or non-base64 compressed_binary") }

        // Ordering: a sample older than one already seen, or a gap that hides a lost batch, breaks the model.
        if let last = state.lastSampleDeviceMs {
            let firstSampleMs = deviceMs - Int64(samples - 1) * Int64(intervalSeconds) * 1000
            let interval = Int64(max(intervalSeconds, state.lastIntervalSeconds ?? intervalSeconds))
            if deviceMs <= last || firstSampleMs - last > 2 * interval * 1000 + DeviceStreamState.gapSlackMs {
                state.trusted = false
            }
        }
        state.lastSampleDeviceMs = max(state.lastSampleDeviceMs ?? deviceMs, deviceMs)
        state.lastIntervalSeconds = intervalSeconds

        let count = registers * samples
        let selection = (0..<count).map { layout[$0 % registers] }
        var values: [UInt16]
        do {
            guard let marker = CompressionMarker(rawValue: first) else {
                return fail(.unknownMarker, "unknown marker \(HexCoding.byteLabel(first))")
            }
            if result.truncated {
                guard marker == .bitPack else {
                    return fail(.truncatedNonBitpack, "blob cut to \(blob.count) of \(result.compressedSize) bytes")
                }
                let present = min(count, BitPackDecoder.availableValues(in: blob))
                let complete = present / registers * registers
                guard complete > 0 else { return fail(.corruptBlob, "truncated blob holds no complete sample") }
                values = try BitPackDecoder.decode(blob, count: complete)
                state.trusted = false
            } else {
                switch marker {
                case .bitPack: values = try BitPackDecoder.decode(blob, count: count)
                case .dictionary: values = try DictionaryDecoder.decode(blob, count: count)
                case .semanticRLE:
                    values = try SemanticRLEDecoder.decode(blob, count: count)
                    result.approximate = true
                    state.trusted = false
                case .temporalBase: values = try TemporalDecoder.decodeBase(blob, selection: selection)
                case .temporalDelta:
                    guard state.trusted, state.context.isCompatible(with: selection) else {
                        return fail(.temporalStateUnknown, "encoder state since the last boot is not known exactly")
                    }
                    values = try TemporalDecoder.decodeDelta(blob, selection: selection, context: state.context)
                }
                if !result.approximate { state.context.update(values: values, selection: selection) }
            }
        } catch {
            return fail(.corruptBlob, "\(error)")
        }

        let rows = values.count / registers
        result.samples = (0..<rows).map { Array(values[$0 * registers..<($0 + 1) * registers]) }
        result.sampleTimesMs = (0..<rows).map { lastEpochMs - Int64(samples - 1 - $0) * Int64(intervalSeconds) * 1000 }
        return result
    }
}
