import Foundation

/// Decodes the packets of one upload against a device's ``DeviceStreamState`` (spec §3.6.5).
public enum DeviceStreamDecoder {
    /// Latest arrival time the decoder works with (year 2100): later clocks are clamped to it.
    public static let maxArrivalMs: Int64 = 4_102_444_800_000
    /// Default sampling interval when the payload does not announce one.
    public static let defaultIntervalSeconds = 5

    /// Decodes every packet of `upload`, updating `state`. Never throws: problems become undecodable packets.
    /// - Parameters:
    ///   - arrivalMs: server receive time, epoch milliseconds (anchors the 32-bit packet timestamps).
    ///   - failedAttempts: upload attempts the device made since its last accepted upload (`nonce − last − 1`; the
    ///     firmware spends one nonce per attempt, spec §2.3), or `nil` when unknown. The device drops packets only
    ///     when its 20-slot ring overflows during failed uploads (or, rarely, on low heap), so a gap in sample time
    ///     after an upload without failed attempts is a late sensor read, not a lost batch.
    public static func decode(
        _ upload: UploadPayload,
        arrivalMs: Int64,
        failedAttempts: UInt32? = nil,
        state: inout DeviceStreamState
    ) -> [DecodedPacket] {
        // The arrival time comes from the server's clock; clamped anyway so that no time arithmetic can overflow.
        let arrivalMs = min(max(arrivalMs, 0), maxArrivalMs)
        let gapMeansLoss = failedAttempts.map { $0 >= maxAttemptsWithoutLoss } ?? true
        return upload.packets.enumerated().map { index, packet in
            decodePacket(packet, index: index, upload: upload, arrivalMs: arrivalMs, gapMeansLoss: gapMeansLoss, state: &state)
        }
    }

    /// Failed attempts that cannot have overflowed the ring: one failed attempt and its retry (spec §3.6.4).
    static let maxAttemptsWithoutLoss: UInt32 = 2

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
        gapMeansLoss: Bool,
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

        /// The packet is lost to both models (undecodable, lossy or cut): neither follows the device exactly any more.
        func untrustBoth() {
            state.current.trusted = false
            state.bootCandidate?.trusted = false
        }
        func fail(_ reason: UndecodableReason, _ detail: String) -> DecodedPacket {
            untrustBoth()
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

        // A device without NTP counts time from boot: time that went back is a reboot, proven by a signed upload.
        if !clockSynced, state.bootCandidate != nil, let last = state.current.lastSampleDeviceMs, deviceMs < last {
            state.adoptBootCandidate()
        }
        // Ordering: a sample older than one already seen, or a gap that hides a lost batch, breaks a model.
        let interval = Int64(max(intervalSeconds, state.lastIntervalSeconds ?? intervalSeconds))
        let firstSampleMs = deviceMs - Int64(samples - 1) * Int64(intervalSeconds) * 1000
        func followOrder(_ model: inout TemporalModel) {
            if let last = model.lastSampleDeviceMs,
                deviceMs <= last || (gapMeansLoss && firstSampleMs - last > 2 * interval * 1000 + DeviceStreamState.gapSlackMs)
            {
                model.trusted = false
            }
            model.lastSampleDeviceMs = max(model.lastSampleDeviceMs ?? deviceMs, deviceMs)
        }
        followOrder(&state.current)
        if state.bootCandidate != nil { followOrder(&state.bootCandidate!) }
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
                untrustBoth()
            } else {
                switch marker {
                case .bitPack: values = try BitPackDecoder.decode(blob, count: count)
                case .dictionary: values = try DictionaryDecoder.decode(blob, count: count)
                case .semanticRLE:
                    values = try SemanticRLEDecoder.decode(blob, count: count)
                    result.approximate = true
                    untrustBoth()
                case .temporalBase: values = try TemporalDecoder.decodeBase(blob, selection: selection)
                case .temporalDelta:
                    switch try decodeDelta(blob, selection: selection, state: &state) {
                    case .decoded(let decoded): values = decoded
                    case .unknown(let detail): return fail(.temporalStateUnknown, detail)
                    }
                }
                if !result.approximate {
                    state.current.update(values: values, selection: selection)
                    state.bootCandidate?.update(values: values, selection: selection)
                }
            }
        } catch {
            return fail(.corruptBlob, "\(error)")
        }

        let rows = values.count / registers
        result.samples = (0..<rows).map { Array(values[$0 * registers..<($0 + 1) * registers]) }
        result.sampleTimesMs = (0..<rows).map { lastEpochMs - Int64(samples - 1 - $0) * Int64(intervalSeconds) * 1000 }
        return result
    }

    enum DeltaOutcome {
        case decoded([UInt16])
        case unknown(String)
    }

    /// A 0x71 blob against the two hypotheses (no reboot, reboot at the boot signal). The device's encoder was
    /// compatible when it wrote the blob, so a trusted model that is not compatible is disproved (a freshly booted
    /// encoder is not compatible before its buffer is full). When both fit, the reboot the device's own address
    /// announced is the better explanation: the candidate becomes the model (whether or not they predict the same).
    static func decodeDelta(_ blob: [UInt8], selection: [Int], state: inout DeviceStreamState) throws(CodecError) -> DeltaOutcome {
        let current = state.current
        let currentFits = current.isCompatible(with: selection)
        guard let candidate = state.bootCandidate, candidate.trusted else {
            guard currentFits else { return .unknown("encoder state since the last boot is not known exactly") }
            return .decoded(try TemporalDecoder.decodeDelta(blob, selection: selection, context: current.context))
        }
        switch (currentFits, candidate.isCompatible(with: selection)) {
        case (true, true), (false, true):
            state.adoptBootCandidate()
            return .decoded(try TemporalDecoder.decodeDelta(blob, selection: selection, context: candidate.context))
        case (true, false):
            // A freshly booted encoder could not have written this blob: there was no reboot at the signal.
            state.bootCandidate = nil
            return .decoded(try TemporalDecoder.decodeDelta(blob, selection: selection, context: current.context))
        case (false, false):
            return .unknown("encoder state since the last boot is not known exactly")
        }
    }
}
