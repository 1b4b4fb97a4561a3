import EcoWattProtocol
import Foundation

/// Seed inputs for the harness, built from the firmware's own conformance corpora (`../shared/conformance`) plus a
/// few synthetic boot sequences for what the corpora lack (0x70 packets, unsynced clocks).
public enum FuzzSeeds {
    /// Every seed, named after its source.
    public static func make(conformance directory: URL) throws -> [(name: String, input: [UInt8])] {
        var seeds: [(String, [UInt8])] = []
        for file in ["uploads.jsonl", "negative.jsonl", "firmware_runs.jsonl"] {
            let lines = try jsonLines(directory.appendingPathComponent(file))
            let uploads = lines.filter { ($0["path"] as? String)?.hasPrefix("/aggregated/") == true }
            for (index, line) in uploads.enumerated() {
                guard let body = line["body"] as? String else { continue }
                seeds.append(("\(file)-envelope-\(index)", DeviceInputHarness.input(.envelope, Array(body.utf8))))
            }
            // Whole boot sequences of one device, as the temporal model and the time reconstruction see them.
            // firmware_runs.jsonl numbers the boots of each run; the other files mark a boot's first upload.
            var sequences: [String: [[UInt8]]] = [:]
            let numberedBoots = file == "firmware_runs.jsonl"
            for line in uploads {
                guard let path = line["path"] as? String, let body = line["body"] as? String,
                    let envelope = try? SecuredEnvelope(parsing: Array(body.utf8))
                else { continue }
                let device = path.components(separatedBy: "/").last ?? ""
                let key = numberedBoots ? "\(line["run"] ?? "")-\(device)-boot\(line["boot"] ?? "")" : device
                if !numberedBoots, line["boot"] as? Bool == true {
                    // A reboot: the sequence so far goes on, with the boot signal before the new boot's first upload.
                    sequences[key, default: []].append(DeviceInputHarness.bootLine)
                }
                sequences[key, default: []].append(envelope.payload)
                if sequences[key]!.count == DeviceInputHarness.maxUploads {
                    seeds.append(("\(file)-uploads-\(key)-\(seeds.count)", sequenceInput(sequences[key]!)))
                    sequences[key] = []
                }
            }
            for (key, documents) in sequences.sorted(by: { $0.key < $1.key }) where !documents.isEmpty {
                seeds.append(("\(file)-uploads-\(key)", sequenceInput(documents)))
            }
        }
        for (index, line) in try jsonLines(directory.appendingPathComponent("blobs.jsonl")).enumerated() {
            guard let hex = line["blob_hex"] as? String, let blob = HexCoding.decode(hex),
                let layout = line["register_layout"] as? [Int], let samples = line["sample_count"] as? Int,
                (1...50).contains(samples), (1...10).contains(layout.count)
            else { continue }
            let header = [UInt8(layout.count - 1), UInt8(samples - 1)]
            seeds.append(("blobs-\(index)", DeviceInputHarness.input(.codecs, header + blob)))
        }
        seeds += synthetic()
        return seeds
    }

    /// Boot sequences the corpora lack: a 0x70 packet followed by 0x71 ones, and a device without NTP.
    public static func synthetic() -> [(name: String, input: [UInt8])] {
        var seeds: [(String, [UInt8])] = []
        for synced in [true, false] {
            let layout = [0, 1, 9]
            var context = TemporalContext()
            var compressor: SmartCompressor?
            var documents: [[UInt8]] = []
            for batch in 0..<DeviceInputHarness.maxUploads {
                let values: [UInt16] = [UInt16(2300 + batch % 3), UInt16(50 + batch % 2), UInt16(1200 + 7 * batch)]
                let blob: [UInt8]
                if var running = compressor {
                    blob = running.compress(values, selection: layout)
                    compressor = running
                } else {
                    // The first batch of a boot as the temporal encoder alone writes it: 0x70 (no history yet).
                    blob = TemporalEncoder.encode(values, selection: layout, context: &context)
                    compressor = SmartCompressor(context: context)
                }
                let uptimeSeconds = UInt64(15 * (batch + 1))
                let timestamp: UInt64 = synced ? 1_764_300_000 + uptimeSeconds : uptimeSeconds
                let packet = UploadBuilder.Packet(
                    blob: blob,
                    registerLayout: layout,
                    sampleCount: 1,
                    timestamp: UInt32(truncatingIfNeeded: timestamp * 1000 - 500)
                )
                let inner = UploadBuilder.innerJSON(deviceID: "FUZZ", timestamp: timestamp, samplingInterval: 15, packets: [packet])
                documents.append(Array(inner.utf8))
            }
            seeds.append(("synthetic-temporal-\(synced ? "synced" : "unsynced")", sequenceInput(documents)))
            let envelope = SecuredEnvelope.sign(payload: documents[0], nonce: 11_001, key: FleetKey.firmwareDefault)
            seeds.append(("synthetic-envelope-\(synced ? "synced" : "unsynced")", DeviceInputHarness.input(.envelope, Array(envelope.jsonBody.utf8))))
        }
        // 0x70 never occurs in the corpora (spec §3.4): one base blob for the codec mode (registers 0, 1, 2; 2 samples).
        var fresh = TemporalContext()
        let base = TemporalEncoder.encode([2301, 52, 5000, 2302, 53, 4999], selection: [0, 1, 2, 0, 1, 2], context: &fresh)
        seeds.append(("synthetic-codec-temporal-base", DeviceInputHarness.input(.codecs, [2, 1] + base)))
        let json = #"{"a":[1,-2.5e3,true,null,"\u00e9\n"],"b":{"c":18446744073709551616}}"#
        seeds.append(("synthetic-json", DeviceInputHarness.input(.json, Array(json.utf8))))
        return seeds
    }

    static func sequenceInput(_ documents: [[UInt8]]) -> [UInt8] {
        DeviceInputHarness.input(.uploads, Array(documents.joined(separator: [0x0A])))
    }

    static func jsonLines(_ url: URL) throws -> [[String: Any]] {
        try String(contentsOf: url, encoding: .utf8).split(separator: "\n").compactMap {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }
}
