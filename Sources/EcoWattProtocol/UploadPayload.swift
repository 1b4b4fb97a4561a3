import Foundation

/// The inner JSON of an upload (spec §3.6.1), after the envelope has been verified.
///
/// Only `device_id` and `compressed_data` are required; a packet whose own fields are missing or mistyped does not
/// fail the upload, it is kept as ``CompressedPacket/metadataProblem`` and stored as undecodable.
public struct UploadPayload: Decodable, Sendable {
    public var deviceID: String
    /// Upload time in Unix seconds, or seconds since boot when the device clock is not synced (< 1e9).
    public var timestamp: Int64?
    /// Current poll period in whole seconds.
    public var samplingInterval: Int?
    public var packets: [CompressedPacket]

    enum CodingKeys: String, CodingKey {
        case deviceID = "device_id"
        case timestamp
        case samplingInterval = "sampling_interval"
        case packets = "compressed_data"
    }

    public init(deviceID: String, timestamp: Int64?, samplingInterval: Int?, packets: [CompressedPacket]) {
        self.deviceID = deviceID
        self.timestamp = timestamp
        self.samplingInterval = samplingInterval
        self.packets = packets
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        deviceID = try container.decode(String.self, forKey: .deviceID)
        timestamp = try? container.decodeIfPresent(Int64.self, forKey: .timestamp)
        samplingInterval = try? container.decodeIfPresent(Int.self, forKey: .samplingInterval)
        packets = try container.decode([CompressedPacket].self, forKey: .packets)
    }

    /// Parses the inner JSON bytes. Throws `DecodingError` for malformed JSON or missing required fields.
    public init(parsing bytes: some DataProtocol) throws {
        self = try JSONDecoder().decode(UploadPayload.self, from: Data(bytes))
    }

    /// True when the device clock was NTP-synced at upload time (spec §0.6).
    public var clockSynced: Bool { (timestamp ?? 0) >= 1_000_000_000 }
}

/// One element of `compressed_data`: a compressed batch plus its metadata.
public struct CompressedPacket: Decodable, Sendable {
    /// `compressed_binary`, base64 as sent (possibly cut to 189 bytes by the firmware).
    public var compressedBinary: String
    public var method: String?
    public var registerCount: Int
    public var sampleCount: Int
    /// Full blob length before any truncation on the wire.
    public var compressedSizeBytes: Int?
    /// Last sample time, epoch milliseconds mod 2^32 (or `millis()` when unsynced).
    public var timestamp: UInt32
    public var registerLayout: [Int]
    /// Set when a field of this packet was missing or mistyped; the packet is then stored undecodable.
    public var metadataProblem: String?

    public init(
        compressedBinary: String,
        method: String?,
        registerCount: Int,
        sampleCount: Int,
        compressedSizeBytes: Int?,
        timestamp: UInt32,
        registerLayout: [Int]
    ) {
        self.compressedBinary = compressedBinary
        self.method = method
        self.registerCount = registerCount
        self.sampleCount = sampleCount
        self.compressedSizeBytes = compressedSizeBytes
        self.timestamp = timestamp
        self.registerLayout = registerLayout
    }

    enum CodingKeys: String, CodingKey {
        case compressedBinary = "compressed_binary"
        case metadata = "decompression_metadata"
    }

    enum MetadataKeys: String, CodingKey {
        case method
        case registerCount = "register_count"
        case sampleCount = "sample_count"
        case compressedSizeBytes = "compressed_size_bytes"
        case timestamp
        case registerLayout = "register_layout"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        compressedBinary = (try? container.decode(String.self, forKey: .compressedBinary)) ?? ""
        registerCount = 0
        sampleCount = 0
        timestamp = 0
        registerLayout = []
        if (try? container.decode(String.self, forKey: .compressedBinary)) == nil {
            metadataProblem = "compressed_binary missing or not a string"
        }
        guard let metadata = try? container.nestedContainer(keyedBy: MetadataKeys.self, forKey: .metadata) else {
            metadataProblem = "decompression_metadata missing or not an object"
            return
        }
        method = try? metadata.decodeIfPresent(String.self, forKey: .method)
        compressedSizeBytes = try? metadata.decodeIfPresent(Int.self, forKey: .compressedSizeBytes)
        do {
            registerCount = try metadata.decode(Int.self, forKey: .registerCount)
            sampleCount = try metadata.decode(Int.self, forKey: .sampleCount)
            registerLayout = try metadata.decode([Int].self, forKey: .registerLayout)
            let stamp = try metadata.decode(Int64.self, forKey: .timestamp)
            timestamp = UInt32(truncatingIfNeeded: stamp)
        } catch {
            metadataProblem = metadataProblem ?? "decompression_metadata fields missing or mistyped"
        }
    }
}
