import EcoWattProtocol
import EcoWattTestSupport
import Foundation
import Testing

@Suite struct EncoderTests {
    @Test func bitPackReproducesTheSpecExample() {
        let values: [UInt16] = [2304, 52, 71, 70, 452, 1198, 2306, 52, 71, 70, 452, 1201, 2305, 53, 72, 70, 453, 1199]
        #expect(HexCoding.encode(BitPackEncoder.encode(values)) == "010c129000340470461c44ae9020340470461c44b19010350480461c54af")
    }

    @Test func bitPackWidthIsClampedTo8Through16() {
        #expect(BitPackEncoder.bitWidth(for: [0]) == 8)
        #expect(BitPackEncoder.bitWidth(for: [255]) == 8)
        #expect(BitPackEncoder.bitWidth(for: [256]) == 9)
        #expect(BitPackEncoder.bitWidth(for: [65535]) == 16)
        // Header count byte wraps at 256; the stream still holds every value.
        let many = [UInt16](repeating: 4095, count: 300)
        let blob = BitPackEncoder.encode(many)
        #expect(blob[2] == UInt8(300 & 0xFF))
        #expect(blob.count == 3 + 300 * 12 / 8)
        #expect((try? BitPackDecoder.decode(blob, count: 300)) == many)
    }

    @Test func dictionaryReproducesTheSpecExampleAndFallsBack() {
        let sample: [UInt16] = [2304, 52, 71, 71, 452, 52]
        #expect(HexCoding.encode(DictionaryEncoder.encode(sample + sample + sample)) == "d01204000010450000504200008e420000e24388b420d282480b")
        // Six distinct values in six: the dictionary is larger, so the firmware returns the bit-pack blob.
        let distinct: [UInt16] = [1, 2, 3, 4, 5, 6]
        #expect(DictionaryEncoder.encode(distinct) == BitPackEncoder.encode(distinct))
    }

    @Test func semanticReproducesTheSpecExampleRoundTrip() throws {
        let blob = Conformance.bytes(
            hex: "5024020418000103040607090a0c0d0f101213151618191b1c1e1f2122140e18070c0205080b0e1114171a1d2023b0040c"
        )
        // Re-encoding what the blob decodes to gives the same bytes (runs of identical heads).
        let decoded = try SemanticRLEDecoder.decode(blob, count: 36)
        let selection = (0..<36).map { [3, 4, 9][$0 % 3] }
        #expect(SemanticRLEEncoder.encode(decoded, selection: selection) == blob)
    }

    @Test func temporalEncodesEveryDeltaWidthAndDecodesBack() throws {
        var encoder = TemporalContext()
        var decoder = TemporalContext()
        let selection = [0, 9]
        // Eight calls fill the ring; the ninth is compatible and uses deltas of each width.
        var rows: [[UInt16]] = (0..<8).map { [UInt16(2300 + $0), UInt16(1000 + 10 * $0)] }
        rows.append([2308 + 63, 1080 + 127])  // 1-byte and 2-byte codes
        rows.append([2371 - 200, 1207 + 1000])  // 3-byte codes
        for (index, values) in rows.enumerated() {
            let blob = TemporalEncoder.encode(values, selection: selection, context: &encoder)
            if index < 8 {
                #expect(blob[0] == 0x70)
                #expect(try TemporalDecoder.decodeBase(blob, selection: selection) == values)
            } else {
                #expect(blob[0] == 0x71)
                #expect(try TemporalDecoder.decodeDelta(blob, selection: selection, context: decoder) == values)
            }
            decoder.update(values: values, selection: selection)
            #expect(encoder == decoder)
        }
    }

    /// Every batch the firmware's own encoder compressed (`blobs.jsonl`), reproduced byte for byte: one compressor per
    /// boot sequence, fed in compression order with what the device read.
    @Test func reproducesEveryFirmwareBlob() throws {
        let lines = try Conformance.lines("blobs.jsonl")
        #expect(lines.count == 367)
        let sorted = lines.sorted {
            ($0["sequence"] as! String, $0["index"] as! Int) < ($1["sequence"] as! String, $1["index"] as! Int)
        }
        var compressors = [String: SmartCompressor]()
        var nextIndex = [String: Int]()
        var matched = [String: Int]()
        for line in sorted {
            let sequence = line["sequence"] as! String
            let index = line["index"] as! Int
            #expect(index == nextIndex[sequence, default: 0], "\(sequence): batches must be contiguous")
            nextIndex[sequence] = index + 1
            let layout = line["register_layout"] as! [Int]
            let samples = line["sample_count"] as! Int
            let selection = (0..<layout.count * samples).map { layout[$0 % layout.count] }
            let rows = (line["true_values"] as? [[Int]]) ?? (line["values"] as! [[Int]])
            let values = rows.flatMap { $0.map { UInt16($0) } }
            var compressor = compressors[sequence] ?? SmartCompressor()
            let blob = compressor.compress(values, selection: selection)
            compressors[sequence] = compressor
            #expect(HexCoding.encode(blob) == line["blob_hex"] as! String, "\(sequence) #\(index)")
            if HexCoding.encode(blob) == line["blob_hex"] as! String {
                matched[line["marker"] as! String, default: 0] += 1
            }
        }
        #expect(matched == ["0x01": 242, "0xD0": 20, "0x50": 18, "0x71": 87])
    }
}

@Suite struct UploadBuilderTests {
    @Test func arduinoJSONNumberFormat() {
        #expect(ArduinoJSONNumber.format(Float(30) / Float(36)) == "0.833333313")
        #expect(ArduinoJSONNumber.format(Float(36) / Float(30)) == "1.200000048")
        #expect(ArduinoJSONNumber.format((1 - Float(30) / Float(36)) * 100) == "16.66666794")
        #expect(ArduinoJSONNumber.format(Float(1.5)) == "1.5")
        #expect(ArduinoJSONNumber.format(Float(12.5)) == "12.5")
        #expect(ArduinoJSONNumber.format(Float(-0.25)) == "-0.25")
        #expect(ArduinoJSONNumber.format(Double(0)) == "0")
        #expect(ArduinoJSONNumber.format(Double(123_456_789)) == "1.23456789e8")
        #expect(ArduinoJSONNumber.format(0.000001) == "1e-6")
    }

    @Test func blobsLongerThan189BytesAreCutOnTheWire() {
        let blob = [UInt8](repeating: 0xAB, count: 200)
        #expect(Data(base64Encoded: UploadBuilder.wireBase64(blob)) == Data(blob.prefix(189)))
        #expect(UploadBuilder.wireBase64(blob).count == 252)
        #expect(Data(base64Encoded: UploadBuilder.wireBase64(Array(blob.prefix(10)))) == Data(blob.prefix(10)))
    }

    /// Every request of `uploads.jsonl` rebuilt from its packets (complete blobs from `blobs.jsonl`) and signed with
    /// the firmware key: inner JSON and envelope must equal what the firmware sent, byte for byte.
    @Test func reproducesEveryFirmwareUploadBody() throws {
        let fullBlobs = try Conformance.lines("blobs.jsonl").map { Conformance.bytes(hex: $0["blob_hex"] as! String) }
        let key = EnvelopeKey(FleetKey.firmwareDefault)
        var reproduced = 0
        let lines = try Conformance.lines("uploads.jsonl")
        for line in lines {
            let body = line["body"] as! String
            let envelope = try JSONSerialization.jsonObject(with: Data(body.utf8)) as! [String: Any]
            let inner = Data(base64Encoded: envelope["payload"] as! String)!
            let payload = try JSONSerialization.jsonObject(with: inner) as! [String: Any]
            let packets = (payload["compressed_data"] as! [[String: Any]]).map { packet in
                let metadata = packet["decompression_metadata"] as! [String: Any]
                let wire = [UInt8](Data(base64Encoded: packet["compressed_binary"] as! String)!)
                let size = metadata["compressed_size_bytes"] as! Int
                let blob =
                    wire.count == size ? wire : fullBlobs.first { $0.count == size && $0.starts(with: wire) } ?? []
                return UploadBuilder.Packet(
                    blob: blob,
                    registerLayout: metadata["register_layout"] as! [Int],
                    sampleCount: metadata["sample_count"] as! Int,
                    timestamp: UInt32(metadata["timestamp"] as! Int)
                )
            }
            let rebuilt = UploadBuilder.innerJSON(
                deviceID: payload["device_id"] as! String,
                timestamp: UInt64(payload["timestamp"] as! Int),
                samplingInterval: payload["sampling_interval"] as! Int,
                packets: packets
            )
            #expect(rebuilt == String(decoding: inner, as: UTF8.self), "\(line["device_id"]!) seq \(line["seq"]!)")
            let signed = SecuredEnvelope.sign(
                payload: Array(rebuilt.utf8),
                nonce: UInt32(line["nonce"] as! Int),
                key: key
            )
            #expect(signed.jsonBody == body)
            if signed.jsonBody == body { reproduced += 1 }
        }
        #expect(reproduced == 317)
    }
}
