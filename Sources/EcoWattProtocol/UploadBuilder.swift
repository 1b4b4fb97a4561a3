import Foundation

/// Builds the upload a device sends (`DataUploader::attemptUpload`, spec §3.6): the inner JSON, byte for byte in the
/// firmware's key order and number format, including the 189-byte base64 cut of long blobs.
public enum UploadBuilder {
    /// Longest blob `convertBinaryToBase64` encodes completely; longer blobs are cut to this many bytes (spec §3.6.2).
    public static let base64BlobLimit = 189
    /// Most packets the firmware puts in one request (spec §3.6.4).
    public static let maxPacketsPerUpload = 8
    /// The firmware fails locally when the inner JSON would reach this many bytes (spec §3.6.4).
    public static let maxInnerJSONBytes = 4095

    /// One compressed batch: the firmware's upload-ring entry.
    public struct Packet: Sendable, Equatable {
        /// The complete blob (the wire carries at most its first 189 bytes).
        public var blob: [UInt8]
        /// Register ids of one sample, in order.
        public var registerLayout: [Int]
        public var sampleCount: Int
        /// Last sample's time, epoch milliseconds cut to 32 bits (or `millis()` when unsynced).
        public var timestamp: UInt32

        public init(blob: [UInt8], registerLayout: [Int], sampleCount: Int, timestamp: UInt32) {
            self.blob = blob
            self.registerLayout = registerLayout
            self.sampleCount = sampleCount
            self.timestamp = timestamp
        }

        var originalBytes: Int { 2 * registerLayout.count * sampleCount }
    }

    /// `convertBinaryToBase64`: standard base64 of at most the first 189 bytes.
    public static func wireBase64(_ blob: [UInt8]) -> String {
        Data(blob.prefix(base64BlobLimit)).base64EncodedString()
    }

    /// The inner JSON text (the envelope payload) for up to eight packets, oldest first.
    ///
    /// - Parameters:
    ///   - timestamp: upload time in Unix seconds (seconds since boot when unsynced).
    ///   - samplingInterval: the current poll period in whole seconds.
    public static func innerJSON(
        deviceID: String,
        timestamp: UInt64,
        samplingInterval: Int,
        packets: [Packet]
    ) -> String {
        var json = #"{"device_id":"# + quoted(deviceID)
        json += #","timestamp":\#(timestamp),"data_type":"compressed_sensor_batch""#
        json += #","total_samples":\#(packets.count),"sampling_interval":\#(samplingInterval)"#
        json += #","register_mapping":{"#
        let mappingLayout = packets.last?.registerLayout ?? []
        json += mappingLayout.enumerated().map { index, register in
            #""\#(index)":"# + quoted(Register(rawValue: register)?.name ?? "Unknown")
        }.joined(separator: ",")
        json += #"},"compressed_data":["#
        var totalOriginal = 0
        var totalCompressed = 0
        json += packets.map { packet in
            let original = packet.originalBytes
            let compressed = packet.blob.count
            totalOriginal += original
            totalCompressed += compressed
            let academic = Float(compressed) / Float(original)
            let traditional = Float(original) / Float(compressed)
            var text = #"{"compressed_binary":""# + wireBase64(packet.blob) + #"""#
            text += #","decompression_metadata":{"method":""# + SmartCompressor.method(of: packet.blob) + #"""#
            text += #","register_count":\#(packet.registerLayout.count),"sample_count":\#(packet.sampleCount)"#
            text += #","original_size_bytes":\#(original),"compressed_size_bytes":\#(compressed)"#
            text += #","timestamp":\#(packet.timestamp),"register_layout":["#
            text += packet.registerLayout.map(String.init).joined(separator: ",") + "]}"
            text += #","performance_metrics":{"academic_ratio":"# + ArduinoJSONNumber.format(academic)
            text += #","traditional_ratio":"# + ArduinoJSONNumber.format(traditional)
            text += #","compression_time_us":0,"savings_percent":"# + ArduinoJSONNumber.format((1 - academic) * 100)
            text += #","lossless_verified":false}}"#
            return text
        }.joined(separator: ",")
        let overall = Float(totalCompressed) / Float(totalOriginal)
        json += #"],"session_summary":{"total_original_bytes":\#(totalOriginal)"#
        json += #","total_compressed_bytes":\#(totalCompressed)"#
        json += #","overall_academic_ratio":"# + ArduinoJSONNumber.format(overall)
        json += #","overall_savings_percent":"# + ArduinoJSONNumber.format((1 - overall) * 100) + "}}"
        return json
    }

    private static func quoted(_ text: String) -> String {
        JSONValue.string(text).serialized
    }
}
