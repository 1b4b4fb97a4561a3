/// What a configuration must keep within so that the firmware loses no data (issue 15; spec §3.2, §3.6.2, §3.6.4):
/// every limit in one place, checked against the device's whole resulting configuration.
///
/// - A batch holds the samples of one upload period: at most `upload / sampling + 1` (phase and read time), and the
///   firmware keeps 50 (older ones are overwritten: the 300 s / 5 s configuration of the corpus lost 11 samples).
/// - A batch's blob is cut to 189 bytes on the wire: whatever the compressor picks is no longer than bit-packing every
///   value at the width of the largest reading, so that blob must fit (the corpus's 23-sample packets were cut).
/// - Eight backlogged packets must serialise under 4 095 bytes, or the device fails locally at every attempt and never
///   uploads again (8 packets of 10 registers × 3 samples take 4 106 bytes, spec §3.6.4).
public enum DeviceCapacity {
    public static let samplesPerBatch = FirmwareUploadQueue.sampleCapacity

    /// The widest reading each register can give, in bits: its physical range with headroom (Vac1 ≤ 409.5 V, Iac1 ≤
    /// 409.5 A, Fac1 ≤ 81.91 Hz, Vpv ≤ 819.1 V, Ipv ≤ 409.5 A, Temp ≤ 409.5 °C, Pow ≤ 100 %, Pac ≤ 16 383 W). The
    /// firmware packs at least 8 bits per value.
    public static func worstBits(_ register: Register) -> Int {
        switch register {
        case .fac1, .vpv1, .vpv2: 13
        case .pow: 8
        case .pac: 14
        default: 12
        }
    }

    /// The most samples one upload period can collect.
    public static func worstSamplesPerBatch(samplingSeconds: Int, uploadSeconds: Int) -> Int {
        uploadSeconds / max(1, samplingSeconds) + 1
    }

    /// The largest blob the compressor can pick for `samples` samples of `registers` (bit-packing is always a
    /// candidate, and the shortest wins).
    public static func worstBlobBytes(registers: [Register], samples: Int) -> Int {
        let bits = registers.map(worstBits).max() ?? 8
        return 3 + (registers.count * samples * bits + 7) / 8
    }

    /// The inner JSON of a full backlog request: 8 packets of worst-case blobs, built by ``UploadBuilder``.
    /// - Parameter deviceID: the device's id (it is in every request); 32 characters when not known.
    public static func worstBacklogJSONBytes(registers: [Register], samples: Int, samplingSeconds: Int, deviceID: String? = nil) -> Int {
        let size = worstBlobBytes(registers: registers, samples: samples)
        let packet = UploadBuilder.Packet(
            blob: Array(repeating: 0xFF, count: size),
            registerLayout: registers.map(\.rawValue),
            sampleCount: samples,
            timestamp: UInt32.max
        )
        let json = UploadBuilder.innerJSON(
            deviceID: deviceID ?? String(repeating: "W", count: 32),
            timestamp: UInt64(UInt32.max),
            samplingInterval: samplingSeconds,
            packets: Array(repeating: packet, count: UploadBuilder.maxPacketsPerUpload)
        )
        // The ratios of real blobs (any size up to this one) print with up to 12 characters ("-16.66666794"); these may
        // print shorter: count every ratio at 12.
        let academic = Float(size) / Float(2 * registers.count * samples)
        let ratios = [academic, 1 / academic, (1 - academic) * 100].map { 12 - ArduinoJSONNumber.format($0).utf8.count }
        let overall = [academic, (1 - academic) * 100].map { 12 - ArduinoJSONNumber.format($0).utf8.count }
        return json.utf8.count + UploadBuilder.maxPacketsPerUpload * ratios.reduce(0, +) + overall.reduce(0, +)
    }

    /// Why the configuration loses data, if it does.
    public static func problems(samplingSeconds: Int, uploadSeconds: Int, registers: [Register], deviceID: String? = nil) -> [String] {
        let samples = worstSamplesPerBatch(samplingSeconds: samplingSeconds, uploadSeconds: uploadSeconds)
        var problems: [String] = []
        if samples > samplesPerBatch {
            problems.append(
                "an upload period of \(uploadSeconds) s collects up to \(samples) samples at \(samplingSeconds) s, the device keeps \(samplesPerBatch)"
            )
        }
        let blob = worstBlobBytes(registers: registers, samples: min(samples, samplesPerBatch))
        if blob > UploadBuilder.base64BlobLimit {
            problems.append(
                "a batch of \(min(samples, samplesPerBatch)) samples × \(registers.count) registers can compress to \(blob) bytes, the device sends \(UploadBuilder.base64BlobLimit)"
            )
        }
        let json = worstBacklogJSONBytes(
            registers: registers,
            samples: min(samples, samplesPerBatch),
            samplingSeconds: samplingSeconds,
            deviceID: deviceID
        )
        if json >= UploadBuilder.maxInnerJSONBytes {
            problems.append(
                "a backlog of 8 such packets serialises to \(json) bytes, over the device's \(UploadBuilder.maxInnerJSONBytes) (it would never upload again)"
            )
        }
        return problems
    }

    public static func isSafe(samplingSeconds: Int, uploadSeconds: Int, registers: [Register], deviceID: String? = nil) -> Bool {
        problems(samplingSeconds: samplingSeconds, uploadSeconds: uploadSeconds, registers: registers, deviceID: deviceID).isEmpty
    }

    /// The largest upload interval, the smallest sampling interval and the most registers that are safe with the other
    /// two settings unchanged (`nil` when none is).
    public static func safeLimits(
        samplingSeconds: Int,
        uploadSeconds: Int,
        registers: [Register],
        deviceID: String? = nil
    ) -> (maxUploadSeconds: Int?, minSamplingSeconds: Int?, maxRegisters: Int?) {
        let upload = ConfigUpdate.range(of: "upload_interval")
        let sampling = ConfigUpdate.range(of: "sampling_interval")
        let maxUpload = upload.reversed().first {
            isSafe(samplingSeconds: samplingSeconds, uploadSeconds: $0, registers: registers, deviceID: deviceID)
        }
        let minSampling = sampling.first {
            isSafe(samplingSeconds: $0, uploadSeconds: uploadSeconds, registers: registers, deviceID: deviceID)
        }
        // Registers: the widest ones go last, so the count that fits is the one for the narrowest choice of them.
        let narrowest = registers.sorted { worstBits($0) < worstBits($1) }
        let maxRegisters = (1...max(1, registers.count)).reversed().first {
            isSafe(samplingSeconds: samplingSeconds, uploadSeconds: uploadSeconds, registers: Array(narrowest.prefix($0)), deviceID: deviceID)
        }
        return (maxUpload, minSampling, maxRegisters)
    }
}
