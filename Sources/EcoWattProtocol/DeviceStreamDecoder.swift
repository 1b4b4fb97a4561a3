import Foundation

/// A packet stored by an earlier upload that this upload changed: decoded now (its predecessors arrived), or re-timed.
public struct StreamUpdate: Sendable, Equatable {
    /// The packet's ``DecodedPacket/serial``.
    public var serial: Int64
    /// The decoded rows when the packet was decoded now; `nil` when only its sample times changed.
    public var samples: [[UInt16]]?
    /// Epoch ms of every stored sample of the packet.
    public var sampleTimesMs: [Int64]
    public var timeEstimated: Bool

    public init(serial: Int64, samples: [[UInt16]]?, sampleTimesMs: [Int64], timeEstimated: Bool) {
        self.serial = serial
        self.samples = samples
        self.sampleTimesMs = sampleTimesMs
        self.timeEstimated = timeEstimated
    }
}

/// What one upload changes: its own packets, and earlier packets it completed.
public struct StreamDecodeResult: Sendable {
    /// One per packet of the upload, in order; a re-sent packet is marked ``DecodedPacket/resend`` and not stored again.
    public var packets: [DecodedPacket]
    public var updates: [StreamUpdate]
}

/// Decodes the packets of one upload against a device's ``DeviceStreamState`` (spec §3.6.5, issues 14 and 15).
public enum DeviceStreamDecoder {
    /// Latest arrival time the decoder works with (year 2100): later clocks are clamped to it.
    public static let maxArrivalMs: Int64 = 4_102_444_800_000
    /// Default sampling interval when the payload does not announce one.
    public static let defaultIntervalSeconds = 5

    /// Decodes every packet of `upload`, updating `state`. Never throws: problems become undecodable packets.
    /// - Parameters:
    ///   - arrivalMs: server receive time, epoch milliseconds (anchors the 32-bit packet timestamps).
    ///   - failedAttempts: upload attempts the device made since its last accepted upload (`nonce − last − 1`; the
    ///     firmware spends one nonce per attempt, spec §2.3), or `nil` when unknown. Two or more mean a failed upload
    ///     period: the device's backlog may arrive out of order, or cut (``Disorder``).
    public static func decode(
        _ upload: UploadPayload,
        arrivalMs: Int64,
        failedAttempts: UInt32? = 0,
        state: inout DeviceStreamState
    ) -> StreamDecodeResult {
        // The arrival time comes from the server's clock; clamped anyway so that no time arithmetic can overflow.
        let arrivalMs = min(max(arrivalMs, 0), maxArrivalMs)
        let intervalSeconds = upload.samplingInterval ?? defaultIntervalSeconds
        let rebootAnnounced = state.hypotheses.count > 1 && !state.entries.contains { $0.serial > state.hypotheses.last!.startSerial }
        state.disorder.begin(failedAttempts: failedAttempts, rebootSinceLastUpload: rebootAnnounced)
        observeClock(upload, arrivalMs: arrivalMs, state: &state)

        var packets: [DecodedPacket] = []
        var fresh: [Int64: Int] = [:]  // serial → index in `packets`
        for (index, packet) in upload.packets.enumerated() {
            let time = state.clock.time(of: packet.timestamp, uploadSynced: upload.clockSynced, arrivalMs: arrivalMs)
            var (result, content) = decodeContent(packet, index: index, lastSampleMs: time.ms)
            result.timeEstimated = time.estimated
            let fingerprint = PacketFingerprint(timestamp: packet.timestamp, sampleCount: packet.sampleCount, blob: result.blob)
            if result.reason != .inconsistentMetadata, state.isResend(fingerprint) {
                result.resend = true
                packets.append(result)
                continue
            }
            result.serial = state.nextSerial
            result.mayBeRetimed = state.disorder.isOpen || state.hypotheses.count > 1
            state.nextSerial += 1
            if let content {
                state.insert(
                    ChainEntry(
                        serial: result.serial,
                        timeMs: time.ms,
                        sampleCount: packet.sampleCount,
                        layout: packet.registerLayout,
                        intervalSeconds: intervalSeconds,
                        content: content,
                        storedSamples: result.samples?.count ?? 0,
                        inDisorder: state.disorder.isOpen,
                        timeEstimated: time.estimated
                    )
                )
            } else {
                // A packet whose metadata cannot describe a batch has no place in time: no model can follow past it.
                for hypothesis in state.hypotheses.indices { state.hypotheses[hypothesis].broken = true }
            }
            fresh[result.serial] = packets.count
            packets.append(result)
        }

        let decoded: [Int64: [UInt16]]
        if state.disorder.end(packets: upload.packets.count) {
            if !state.disorder.lossPossible { state.clearDisorderMarks() }
            decoded = state.settle(finalizing: true)
            state.finalizeDisorder()
        } else {
            decoded = state.settle(finalizing: false)
        }

        var updates: [StreamUpdate] = []
        for index in state.entries.indices {
            let entry = state.entries[index]
            let rows = decoded[entry.serial].map { values in
                (0..<values.count / entry.layout.count).map { Array(values[$0 * entry.layout.count..<($0 + 1) * entry.layout.count]) }
            }
            let (times, after) = state.sampleTimes(of: index)
            if let position = fresh[entry.serial] {
                if let rows {
                    packets[position].samples = rows
                    packets[position].reason = nil
                    packets[position].detail = nil
                } else if case .pending = entry.content {
                    packets[position].detail = "waiting for the batches before it (the backlog arrives out of order)"
                }
                packets[position].sampleTimesMs = Array(times.prefix(packets[position].samples?.count ?? 0))
                state.entries[index].timedAfter = after
            } else if rows != nil || (entry.storedSamples > 0 && after != entry.timedAfter) {
                // Newly decoded rows (stored with their times), or stored rows whose times moved (re-timed).
                updates.append(
                    StreamUpdate(
                        serial: entry.serial,
                        samples: rows,
                        sampleTimesMs: Array(times.prefix(rows?.count ?? entry.storedSamples)),
                        timeEstimated: entry.timeEstimated
                    )
                )
                state.entries[index].timedAfter = after
            }
        }
        state.trim()
        return StreamDecodeResult(packets: packets, updates: updates)
    }

    /// The epoch-ms value ≡ `timestamp (mod 2^32)` closest to `referenceMs`.
    public static func reconstructEpochMs(_ timestamp: UInt32, near referenceMs: Int64) -> Int64 {
        let period: Int64 = 1 << 32
        let referenceMs = min(max(referenceMs, 0), maxArrivalMs)
        let base = referenceMs - (referenceMs & (period - 1)) + Int64(timestamp)
        return [base - period, base, base + period].min { abs($0 - referenceMs) < abs($1 - referenceMs) }!
    }

    /// An unsynced upload carries the device's uptime, signed: the boot it belongs to is known, not guessed. A boot
    /// start later than the one known proves a reboot (announced or not); the same start disproves the reboots
    /// announced since.
    static func observeClock(_ upload: UploadPayload, arrivalMs: Int64, state: inout DeviceStreamState) {
        guard !upload.clockSynced, let seconds = upload.timestamp,
            let estimate = state.clock.bootEstimate(uptimeSeconds: seconds, arrivalMs: arrivalMs)
        else { return }
        if let boot = state.clock.bootEpochMs {
            if estimate <= boot + BootClock.sameBootToleranceMs {
                // The first estimate stays: every stamp of the boot is then placed with the same offset, so packets
                // order exactly by their millis(), whatever the network delay of later uploads.
                state.noRebootSince(boot)
            } else {
                state.rebootProven(startMs: estimate)
                state.clock = BootClock()
                state.clock.bootEpochMs = estimate
            }
        } else if state.nextSerial > 1 {
            // The first unsynced upload of a boot: a device does not lose NTP without a reboot, and one whose packets
            // all predate this boot start has rebooted since.
            let latest = max(state.entries.map(\.timeMs).max() ?? .min, state.hypotheses[0].frontierTimeMs ?? .min)
            let announced = state.hypotheses.dropFirst().contains {
                abs(($0.startTimeMs ?? .min) - estimate) <= BootClock.sameBootToleranceMs * 2
            }
            if announced || latest < estimate { state.rebootProven(startMs: estimate) } else { state.noRebootSince(estimate) }
            state.clock.bootEpochMs = estimate
        } else {
            state.clock.bootEpochMs = estimate
            state.hypotheses[0].startTimeMs = estimate
        }
        state.clock.lastUnsyncedArrivalMs = arrivalMs
    }

    /// The packet's values as far as they do not depend on the encoder model, and its place in the chain (`nil` when
    /// its metadata cannot describe a batch).
    static func decodeContent(_ packet: CompressedPacket, index: Int, lastSampleMs: Int64) -> (DecodedPacket, ChainEntry.Content?) {
        let blob = Data(base64Encoded: packet.compressedBinary).map(Array.init) ?? []
        // Every number below is range-checked before it is multiplied: packets may be built by hand (not only by
        // `CompressedPacket(json:)`), and the fleet key may be public, so none of them can be trusted.
        let registers = packet.registerCount
        let samples = packet.sampleCount
        let layout = packet.registerLayout
        let shapeValid =
            PacketLimits.registerCount.contains(registers) && PacketLimits.sampleCount(registers: registers).contains(samples)
            && layout.count == registers && layout.allSatisfy { PacketLimits.registerIDs.contains($0) }
        let declaredSize = packet.compressedSizeBytes.flatMap { PacketLimits.compressedSizeBytes.contains($0) ? $0 : nil }
        var result = DecodedPacket(
            index: index,
            marker: blob.first,
            method: CompressionMarker.methodLabel(declared: packet.method, marker: blob.first),
            registerLayout: layout.count <= PacketLimits.registerCount.upperBound ? layout : [],
            sampleCount: shapeValid ? samples : 0,
            samples: nil,
            sampleTimesMs: [],
            lastSampleEpochMs: lastSampleMs,
            approximate: false,
            truncated: blob.count < (declaredSize ?? blob.count),
            reason: nil,
            detail: nil,
            blob: blob,
            compressedSize: declaredSize ?? blob.count,
            originalSize: shapeValid ? 2 * registers * samples : 0
        )
        func fail(_ reason: UndecodableReason, _ detail: String, placed: Bool = true) -> (DecodedPacket, ChainEntry.Content?) {
            result.reason = reason
            result.detail = detail
            return (result, placed ? .lost : nil)
        }
        if let problem = packet.metadataProblem { return fail(.inconsistentMetadata, problem, placed: false) }
        guard shapeValid else {
            return fail(
                .inconsistentMetadata,
                "register_count \(registers), sample_count \(samples), layout \(layout.prefix(12)) do not describe a batch",
                placed: false
            )
        }
        guard let first = blob.first else { return fail(.corruptBlob, "empty or non-base64 compressed_binary") }
        guard let marker = CompressionMarker(rawValue: first) else {
            return fail(.unknownMarker, "unknown marker \(HexCoding.byteLabel(first))")
        }
        let count = registers * samples
        let selection = (0..<count).map { layout[$0 % registers] }
        func rows(_ values: [UInt16]) -> [[UInt16]] {
            (0..<values.count / registers).map { Array(values[$0 * registers..<($0 + 1) * registers]) }
        }
        do {
            if result.truncated {
                // Cut on the wire (spec §3.6.2): the whole samples a bit-pack or dictionary prefix still holds.
                let present: Int
                switch marker {
                case .bitPack: present = BitPackDecoder.availableValues(in: blob)
                case .dictionary: present = DictionaryDecoder.availableValues(in: blob)
                default: return fail(.truncatedNonBitpack, "blob cut to \(blob.count) of \(result.compressedSize) bytes")
                }
                let complete = min(count, present) / registers * registers
                guard complete > 0 else {
                    return fail(
                        marker == .bitPack ? .corruptBlob : .truncatedNonBitpack,
                        "blob cut to \(blob.count) of \(result.compressedSize) bytes holds no whole sample"
                    )
                }
                let values =
                    marker == .bitPack
                    ? try BitPackDecoder.decode(blob, count: complete)
                    : try DictionaryDecoder.decode(blob, count: complete)
                result.samples = rows(values)
                result.detail = "cut on the wire: \(complete / registers) of \(samples) samples"
                return (result, .lost)
            }
            switch marker {
            case .bitPack, .dictionary, .temporalBase:
                let values: [UInt16]
                switch marker {
                case .bitPack: values = try BitPackDecoder.decode(blob, count: count)
                case .dictionary: values = try DictionaryDecoder.decode(blob, count: count)
                default: values = try TemporalDecoder.decodeBase(blob, selection: selection)
                }
                result.samples = rows(values)
                return (result, .exact(lastRow: Array(values.suffix(registers))))
            case .semanticRLE:
                // Lossy: the device's encoder goes on from the true readings, which the server never sees.
                result.samples = rows(try SemanticRLEDecoder.decode(blob, count: count))
                result.approximate = true
                return (result, .lost)
            case .temporalDelta:
                result.reason = .temporalStateUnknown
                result.detail = "encoder state since the last boot is not known exactly"
                return (result, .pending(blob: blob))
            }
        } catch {
            return fail(.corruptBlob, "\(error)")
        }
    }
}
