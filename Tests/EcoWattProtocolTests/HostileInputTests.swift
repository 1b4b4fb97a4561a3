import EcoWattProtocol
import Foundation
import Testing

/// Regression tests for the signed uploads that used to end the process (issue 13): every number of an upload is
/// attacker-chosen when the fleet key is the public firmware key, so none of them may trap.
@Suite struct HostileInputTests {
    static let arrivalMs: Int64 = 1_764_300_015_200

    /// Decodes `inner` as one upload against a fresh model.
    static func decode(_ inner: String, arrivalMs: Int64 = arrivalMs) throws -> [DecodedPacket] {
        let upload = try UploadPayload(parsing: Array(inner.utf8))
        var state = DeviceStreamState()
        return DeviceStreamDecoder.decode(upload, arrivalMs: arrivalMs, state: &state).packets
    }

    /// One packet of the spec §3.6.3 example with `metadata` replacing its decompression metadata fields.
    static func packet(_ metadata: String, blob: String = "AQwSkAA0BHBGHESukCA0BHBGHESxkBA1BIBGHFSv") -> String {
        #"{"compressed_binary":"\#(blob)","decompression_metadata":{\#(metadata)}}"#
    }

    static func upload(top: String = #""timestamp":1764300015,"sampling_interval":5"#, packets: [String]) -> String {
        #"{"device_id":"X",\#(top),"compressed_data":[\#(packets.joined(separator: ","))]}"#
    }

    static let goodMetadata =
        #""method":"bitpack","register_count":6,"sample_count":3,"compressed_size_bytes":30,"timestamp":3363422140,"register_layout":[0,1,5,6,7,9]"#

    @Test func theUploadThatEndedTheProcessDecodesToAnUndecodablePacket() throws {
        let packets = try Self.decode(#"{"device_id":"X","timestamp":-1e16,"compressed_data":[{}]}"#)
        #expect(packets.count == 1)
        #expect(packets[0].reason == .inconsistentMetadata)
    }

    @Test(arguments: [
        #""register_count":9223372036854775807,"sample_count":3,"timestamp":1,"register_layout":[0]"#,
        #""register_count":6,"sample_count":9223372036854775807,"timestamp":1,"register_layout":[0,1,5,6,7,9]"#,
        #""register_count":6,"sample_count":-9223372036854775807,"timestamp":1,"register_layout":[0,1,5,6,7,9]"#,
        #""register_count":-1,"sample_count":-1,"timestamp":1,"register_layout":[]"#,
        #""register_count":10,"sample_count":410,"timestamp":1,"register_layout":[0,1,2,3,4,5,6,7,8,9]"#,
        #""register_count":6,"sample_count":3,"timestamp":-1,"register_layout":[0,1,5,6,7,9]"#,
        #""register_count":6,"sample_count":3,"timestamp":4294967296,"register_layout":[0,1,5,6,7,9]"#,
        #""register_count":6,"sample_count":3,"timestamp":9223372036854775807,"register_layout":[0,1,5,6,7,9]"#,
        #""register_count":6,"sample_count":3,"timestamp":1,"compressed_size_bytes":9223372036854775807,"register_layout":[0,1,5,6,7,9]"#,
        #""register_count":6,"sample_count":3,"timestamp":1,"compressed_size_bytes":-5,"register_layout":[0,1,5,6,7,9]"#,
        #""register_count":6,"sample_count":3,"timestamp":1,"register_layout":[0,1,5,6,7,9223372036854775807]"#,
        #""register_count":6,"sample_count":3,"timestamp":1,"register_layout":[0,1,5,6,7,-9]"#,
        #""register_count":2,"sample_count":3,"timestamp":1,"register_layout":[0,1,2,3,4,5,6,7,8,9,0,1,2]"#,
    ])
    func anOutOfRangeMetadataNumberMakesOnlyThatPacketUndecodable(metadata: String) throws {
        let packets = try Self.decode(Self.upload(packets: [Self.packet(metadata), Self.packet(Self.goodMetadata)]))
        #expect(packets[0].reason == .inconsistentMetadata)
        #expect(packets[0].originalSize == 0)
        #expect(packets[1].samples?.count == 3, "the valid packet of the same upload still decodes")
    }

    @Test(arguments: [
        #""timestamp":-10000000000000000,"sampling_interval":-1"#,
        #""timestamp":9223372036854775807,"sampling_interval":9223372036854775807"#,
        #""timestamp":-9223372036854775807,"sampling_interval":-9223372036854775807"#,
        #""timestamp":4294967296,"sampling_interval":86401"#,
        #""timestamp":1e300,"sampling_interval":1e300"#,
    ])
    func outOfRangeUploadNumbersAreIgnoredAndThePacketsStillDecode(top: String) throws {
        let upload = try UploadPayload(parsing: Array(Self.upload(top: top, packets: [Self.packet(Self.goodMetadata)]).utf8))
        #expect(upload.timestamp == nil)
        #expect(upload.samplingInterval == nil)
        var state = DeviceStreamState()
        let packets = DeviceStreamDecoder.decode(upload, arrivalMs: Self.arrivalMs, state: &state).packets
        #expect(packets[0].samples?.count == 3)
        // Unsynced: the last sample is placed at (or before) the arrival time, never far from it.
        #expect(abs(packets[0].lastSampleEpochMs - Self.arrivalMs) < 1 << 33)
    }

    @Test func handBuiltPacketsWithExtremeNumbersDoNotTrapTheDecoder() {
        let extremes = [Int.min, -1, 0, 1, 11, 4097, Int.max]
        var state = DeviceStreamState()
        for registers in extremes {
            for samples in extremes {
                let packet = CompressedPacket(
                    compressedBinary: "AQwSkAA0BHBGHESukCA0BHBGHESxkBA1BIBGHFSv",
                    method: String(repeating: "x", count: 300),
                    registerCount: registers,
                    sampleCount: samples,
                    compressedSizeBytes: samples,
                    timestamp: .max,
                    registerLayout: [registers, samples]
                )
                let upload = UploadPayload(deviceID: "X", timestamp: .max, samplingInterval: .max, packets: [packet])
                for arrival in [Int64.min, -1, 0, Self.arrivalMs, Int64.max] {
                    let decoded = DeviceStreamDecoder.decode(upload, arrivalMs: arrival, state: &state).packets
                    #expect(decoded[0].reason == .inconsistentMetadata)
                    #expect(decoded[0].method == "other", "a device cannot add method labels")
                }
            }
        }
    }

    @Test func decodersRefuseValueCountsTheyCannotAllocate() {
        let blob: [UInt8] = [0x01, 12, 0, 0xFF, 0xFF]
        for count in [Int.min, -1, PacketLimits.maxValues + 1, Int.max] {
            #expect(throws: CodecError.self) { try BitPackDecoder.decode(blob, count: count) }
            #expect(throws: CodecError.self) { try DictionaryDecoder.decode(blob, count: count) }
            #expect(throws: CodecError.self) { try SemanticRLEDecoder.decode(blob, count: count) }
        }
        for selection in [[-1], [10], [Int.max], Array(repeating: 0, count: PacketLimits.maxValues + 1)] {
            #expect(throws: CodecError.self) { try TemporalDecoder.decodeBase(blob, selection: selection) }
            #expect(throws: CodecError.self) {
                try TemporalDecoder.decodeDelta(blob, selection: selection, context: TemporalContext())
            }
        }
    }

    @Test func reconstructingATimeNearTheEndsOfTheClockDoesNotOverflow() {
        for reference in [Int64.min, -1, 0, Int64.max] {
            for stamp in [UInt32.min, UInt32.max] {
                _ = DeviceStreamDecoder.reconstructEpochMs(stamp, near: reference)
            }
        }
    }

    @Test func isoTimesOfExtremeValuesAreClampedToWritableYears() {
        #expect(EpochTime.iso8601(milliseconds: .min).hasPrefix("0001-01"))
        #expect(EpochTime.iso8601(milliseconds: .max).hasPrefix("9999-12-31"))
        #expect(EpochTime.iso8601(seconds: .max).hasPrefix("9999-12-31"))
    }

    @Test func countersSaturateInsteadOfOverflowing() {
        #expect(PacketLimits.adding(.max, 1) == .max)
        #expect(PacketLimits.adding(.min, -1) == .min)
        #expect(PacketLimits.adding(2, 3) == 5)
    }

    @Test func statisticsLabelsComeFromAFixedSet() {
        #expect(CompressionMarker.methodLabel(declared: "bitpack", marker: 0x01) == "bitpack")
        #expect(CompressionMarker.methodLabel(declared: nil, marker: 0xD0) == "dictionary")
        #expect(CompressionMarker.methodLabel(declared: nil, marker: 0x42) == "raw")
        #expect(CompressionMarker.methodLabel(declared: "ünïcode\n", marker: 0x01) == "other")
        #expect(CompressionMarker.markerLabel(0x71) == "0x71")
        #expect(CompressionMarker.markerLabel(0x42) == "other")
        #expect(CompressionMarker.markerLabel(nil) == "none")
    }
}
