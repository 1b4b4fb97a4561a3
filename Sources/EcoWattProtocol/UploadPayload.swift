/// The inner JSON of an upload (spec §3.6.1), after the envelope has been verified.
///
/// Only `device_id` and `compressed_data` are required; a packet whose own fields are missing or mistyped does not
/// fail the upload, it is kept with ``CompressedPacket/metadataProblem`` and stored as undecodable.
public struct UploadPayload: Sendable {
    public var deviceID: String
    /// Upload time in Unix seconds, or seconds since boot when the device clock is not synced (< 1e9).
    public var timestamp: Int64?
    /// Current poll period in whole seconds.
    public var samplingInterval: Int?
    public var packets: [CompressedPacket]

    public init(deviceID: String, timestamp: Int64?, samplingInterval: Int?, packets: [CompressedPacket]) {
        self.deviceID = deviceID
        self.timestamp = timestamp
        self.samplingInterval = samplingInterval
        self.packets = packets
    }

    /// Largest number of packets accepted in one upload (the firmware sends at most 8).
    public static let maxPackets = 64

    /// Parses the inner JSON bytes.
    public init(parsing bytes: [UInt8]) throws(PayloadError) {
        let document: JSONValue
        do {
            document = try JSONParser.parse(bytes)
        } catch {
            throw .malformedJSON(error.description)
        }
        guard document.isObject else { throw .wrongType("the payload must be a JSON object") }
        guard let deviceValue = document["device_id"] else { throw .missingField("device_id") }
        guard let deviceID = deviceValue.stringValue else { throw .wrongType("device_id must be a string") }
        guard let packetsValue = document["compressed_data"] else { throw .missingField("compressed_data") }
        guard let packets = packetsValue.arrayValue else { throw .wrongType("compressed_data must be an array") }
        guard packets.count <= Self.maxPackets else {
            throw .wrongType("compressed_data holds \(packets.count) packets, more than \(Self.maxPackets)")
        }
        // Out-of-range upload-level numbers are ignored (the packets fall back to arrival time and the default
        // interval) rather than refused: an authentic upload must get its 200 (spec §3.6.5).
        self.init(
            deviceID: deviceID,
            timestamp: document["timestamp"]?.intValue.flatMap { PacketLimits.uint32.contains($0) ? $0 : nil },
            samplingInterval: document["sampling_interval"]?.intValue.flatMap { Int(exactly: $0) }
                .flatMap { PacketLimits.samplingIntervalSeconds.contains($0) ? $0 : nil },
            packets: packets.map(CompressedPacket.init(json:))
        )
    }

    /// True when the device clock was NTP-synced at upload time (spec §0.6).
    public var clockSynced: Bool { timestamp.map { PacketLimits.uint32.contains($0) && $0 >= 1_000_000_000 } ?? false }
}

/// Why an authentic upload's inner JSON was refused.
public enum PayloadError: Error, Sendable, Equatable, CustomStringConvertible {
    case malformedJSON(String)
    case missingField(String)
    case wrongType(String)

    public var description: String {
        switch self {
        case .malformedJSON(let detail): "inner JSON is not well-formed (\(detail))"
        case .missingField(let field): "missing field '\(field)'"
        case .wrongType(let detail): detail
        }
    }
}

/// One element of `compressed_data`: a compressed batch plus its metadata.
public struct CompressedPacket: Sendable {
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

    /// Reads one packet leniently: problems are recorded in ``metadataProblem`` instead of failing the upload. Every
    /// number is range-checked here (``PacketLimits``), so nothing downstream can overflow on it.
    public init(json: JSONValue) {
        self.init(
            compressedBinary: json["compressed_binary"]?.stringValue ?? "",
            method: nil,
            registerCount: 0,
            sampleCount: 0,
            compressedSizeBytes: nil,
            timestamp: 0,
            registerLayout: []
        )
        guard json["compressed_binary"]?.stringValue != nil else {
            metadataProblem = "compressed_binary missing or not a string"
            return
        }
        guard let metadata = json["decompression_metadata"], metadata.isObject else {
            metadataProblem = "decompression_metadata missing or not an object"
            return
        }
        method = metadata["method"]?.stringValue
        guard let registers = metadata["register_count"]?.intValue.flatMap({ Int(exactly: $0) }),
            let samples = metadata["sample_count"]?.intValue.flatMap({ Int(exactly: $0) }),
            let stamp = metadata["timestamp"]?.intValue,
            let layoutValues = metadata["register_layout"]?.arrayValue, layoutValues.count <= PacketLimits.registerCount.upperBound
        else {
            metadataProblem = "decompression_metadata fields missing or mistyped"
            return
        }
        let layout = layoutValues.map { $0.intValue.flatMap { Int(exactly: $0) } }
        guard !layout.contains(nil) else {
            metadataProblem = "register_layout holds a value that is not an integer"
            return
        }
        guard PacketLimits.registerCount.contains(registers) else {
            metadataProblem = "register_count \(registers) outside \(PacketLimits.registerCount)"
            return
        }
        guard PacketLimits.sampleCount(registers: registers).contains(samples) else {
            metadataProblem = "sample_count \(samples) outside \(PacketLimits.sampleCount(registers: registers)) for \(registers) registers"
            return
        }
        guard PacketLimits.uint32.contains(stamp) else {
            metadataProblem = "timestamp \(stamp) is not a 32-bit unsigned value"
            return
        }
        if let size = metadata["compressed_size_bytes"] {
            guard let bytes = size.intValue.flatMap({ Int(exactly: $0) }), PacketLimits.compressedSizeBytes.contains(bytes) else {
                metadataProblem = "compressed_size_bytes outside \(PacketLimits.compressedSizeBytes)"
                return
            }
            compressedSizeBytes = bytes
        }
        registerCount = registers
        sampleCount = samples
        timestamp = UInt32(stamp)
        registerLayout = layout.map { $0! }
    }
}
