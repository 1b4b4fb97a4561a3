import EcoWattProtocol
import EcoWattStorage
import Foundation

/// The JSON published for one uploaded packet on `{prefix}/{device_id}`: the original feed's fields (`device_id`,
/// `timestamp`, `values`, `sample_count`, `compression_stats`) plus `register_layout`, scaled `samples`,
/// `approximate` and `received_at`.
public enum TelemetryMessage {
    public static func topic(prefix: String, deviceID: String) -> String { "\(prefix)/\(deviceID)" }

    static func iso(_ ms: Int64) -> String { EpochTime.iso8601(milliseconds: ms) }

    public static func payload(_ packet: OutboxPacket) -> [UInt8] {
        let registers = packet.registerLayout.map { Register(rawValue: $0) }
        let samples: [JSONValue] = zip(packet.samples, packet.sampleTimesMs).map { row, time in
            .object([
                ("timestamp_ms", .int(time)),
                (
                    "registers",
                    .object(
                        zip(registers, row).compactMap { register, raw in
                            register.map { ($0.name, .double($0.scaled(raw))) }
                        }
                    )
                ),
            ])
        }
        var members: [(String, JSONValue)] = [
            ("device_id", .string(packet.deviceID)), ("timestamp", .string(iso(packet.lastSampleMs))),
            ("values", .array(packet.samples.flatMap { $0 }.map { .int(Int64($0)) })),
            ("sample_count", .int(Int64(packet.samples.count))),
            (
                "compression_stats",
                .object([
                    ("method", .string(packet.method)), ("ratio", .double(packet.ratio)),
                    ("original_size", .int(Int64(packet.originalSize))),
                    ("compressed_size", .int(Int64(packet.compressedSize))),
                ])
            ),
            ("register_layout", .array(registers.map { $0.map { .string($0.name) } ?? .null })),
            ("samples", .array(samples)), ("approximate", .bool(packet.approximate)),
            ("received_at", .string(iso(packet.receivedAtMs))),
        ]
        if let reason = packet.reason {
            members.append(("decoded", false))
            members.append(("reason", .string(reason)))
        }
        return Array(JSONValue.object(members).serialized.utf8)
    }
}
