import EcoWattProtocol
import EcoWattSQLite
import EcoWattStorage
import Foundation
import Testing

@testable import MQTTBridge

@Suite struct TelemetryMessageTests {
    /// The spec §3.6.3 example upload (one 0x01 packet, 3 samples × 6 registers).
    static let inner =
        #"{"device_id":"ESP32_001","timestamp":1764300015,"data_type":"compressed_sensor_batch","total_samples":1,"sampling_interval":5,"register_mapping":{"0":"Vac1","1":"Iac1","2":"Ipv1","3":"Ipv2","4":"Temp","5":"Pac"},"compressed_data":[{"compressed_binary":"AQwSkAA0BHBGHESukCA0BHBGHESxkBA1BIBGHFSv","decompression_metadata":{"method":"bitpack","register_count":6,"sample_count":3,"original_size_bytes":36,"compressed_size_bytes":30,"timestamp":3363422140,"register_layout":[0,1,5,6,7,9]},"performance_metrics":{"academic_ratio":0.833333313,"traditional_ratio":1.200000048,"compression_time_us":0,"savings_percent":16.66666794,"lossless_verified":false}}],"session_summary":{"total_original_bytes":36,"total_compressed_bytes":30,"overall_academic_ratio":0.833333313,"overall_savings_percent":16.66666794}}"#

    @Test func payloadCarriesTheOriginalFeedFieldsAndScaledSamples() throws {
        var state = DeviceStreamState()
        let upload = try UploadPayload(parsing: Array(Self.inner.utf8))
        let arrival: Int64 = 1_764_300_015_200
        let packet = try #require(DeviceStreamDecoder.decode(upload, arrivalMs: arrival, state: &state).packets.first)
        let rows = try #require(packet.samples)
        let bytes = TelemetryMessage.payload(OutboxPacket(deviceID: "ESP32_001", packet: packet, receivedAtMs: arrival))
        let json = try JSONParser.parse(bytes)
        #expect(json["device_id"]?.stringValue == "ESP32_001")
        #expect(json["values"] == .array(rows.flatMap { $0 }.map { .int(Int64($0)) }))
        #expect(json["sample_count"]?.intValue == 3)
        #expect(json["compression_stats"]?["ratio"]?.doubleValue == 30.0 / 36.0)
        #expect(json["register_layout"] == .array(["Vac1", "Iac1", "Ipv1", "Ipv2", "Temp", "Pac"]))
        guard case .array(let samples) = json["samples"] else { throw CancellationError() }
        #expect(samples.count == 3)
        for (sample, (row, time)) in zip(samples, zip(rows, packet.sampleTimesMs)) {
            #expect(sample["timestamp_ms"]?.intValue == time)
            #expect(sample["registers"]?["Vac1"]?.doubleValue == Double(row[0]) / 10)
            #expect(sample["registers"]?["Pac"]?.doubleValue == Double(row[5]))
        }
        #expect(json["received_at"]?.stringValue == "2025-11-28T03:20:15.200Z")
        #expect(json["decoded"] == nil)
        #expect(TelemetryMessage.topic(prefix: "ecowatt/data", deviceID: "ESP32_001") == "ecowatt/data/ESP32_001")
    }

    @Test func undecodablePacketsSayWhy() throws {
        let packet = OutboxPacket(
            id: 1,
            deviceID: "D",
            method: "temporal",
            registerLayout: [0, 9],
            samples: [],
            sampleTimesMs: [],
            lastSampleMs: 1_764_300_015_000,
            approximate: false,
            reason: "temporal_state_unknown",
            originalSize: 20,
            compressedSize: 9,
            receivedAtMs: 1_764_300_015_200
        )
        let json = try JSONParser.parse(TelemetryMessage.payload(packet))
        #expect(json["decoded"] == .bool(false) && json["reason"]?.stringValue == "temporal_state_unknown")
        #expect(json["values"] == .array([]) && json["sample_count"]?.intValue == 0)
    }
}
