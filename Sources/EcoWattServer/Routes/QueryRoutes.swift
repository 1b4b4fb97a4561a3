import EcoWattProtocol
import EcoWattStorage
import Foundation
import Hummingbird

/// Operator telemetry queries (spec §1.3): latest sample and history, scaled by the register gains.
struct QueryRoutes {
    let queries: TelemetryQueries

    static let defaultLimit = 1000
    static let maxLimit = 10_000

    func register(on router: some RouterMethods<EcoWattRequestContext>) {
        router.get("/latest/:id", use: latest)
        router.get("/aggregation/latest/:id", use: latest)
        router.get("/aggregation/historical/:id", use: historical)
        router.get("/packets/:id", use: packets)
    }

    @Sendable func latest(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        let sample = try await queries.latest(deviceID)
        var members = Self.sampleMembers(sample)
        members.insert(("success", true), at: 0)
        members.insert(("device_id", .string(deviceID)), at: 1)
        members.append(
            (
                "metadata",
                .object(
                    sample.registerLayout.compactMap(Register.init(rawValue:)).map { register in
                        (
                            register.name,
                            .object([
                                ("name", .string(register.name)), ("unit", .string(register.unit)),
                                ("gain", .double(register.gain)), ("decimals", .int(Int64(register.decimals))),
                            ])
                        )
                    }
                )
            )
        )
        return JSONBody.response(.object(members))
    }

    @Sendable func historical(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        let query = request.uri.queryParameters
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let start = try query["start_time"].map { try Self.parseTime(String($0), name: "start_time") } ?? now - 86_400_000
        let end = try query["end_time"].map { try Self.parseTime(String($0), name: "end_time") } ?? now
        let limit = try request.limitParameter(default: Self.defaultLimit, maximum: Self.maxLimit)
        let history = try await queries.history(
            deviceID: deviceID,
            fromMs: start,
            toMs: end,
            resolution: query["resolution"].map(String.init),
            limit: limit
        )
        let data: [JSONValue] =
            history.resolution == nil
            ? history.samples.map { .object(Self.sampleMembers($0)) } : history.rollups.map { .object(Self.rollupMembers($0)) }
        return JSONBody.response([
            "success": true, "device_id": .string(deviceID), "resolution": .string(history.resolution?.rawValue ?? "raw"),
            "data": .array(data), "count": .int(Int64(data.count)),
            "start_time": .string(Self.iso(start)), "end_time": .string(Self.iso(end)), "limit": .int(Int64(limit)),
        ])
    }

    /// One rollup bucket: the mean of each register (scaled as `registers` of a raw sample is), its minimum and maximum.
    static func rollupMembers(_ rollup: TelemetryRollup) -> [(String, JSONValue)] {
        func scaled(_ pick: (RegisterStatistics) -> Double) -> JSONValue {
            .object(
                rollup.registers.compactMap { entry in
                    Register(rawValue: entry.register).map { ($0.name, .double($0.scaled(pick(entry)))) }
                }
            )
        }
        return [
            ("timestamp", .string(iso(rollup.bucketMs))), ("timestamp_ms", .int(rollup.bucketMs)),
            ("sample_count", .int(Int64(rollup.sampleCount))), ("registers", scaled(\.mean)),
            ("minimum", scaled { Double($0.minimum) }), ("maximum", scaled { Double($0.maximum) }),
        ]
    }

    /// `GET /packets/{id}?limit=`: stored packets (newest first) with their decode outcome, for debugging a device.
    @Sendable func packets(_ request: Request, context: EcoWattRequestContext) async throws -> Response {
        let deviceID = try context.deviceID()
        let limit = try request.limitParameter(default: 100, maximum: 1000)
        let rows = try await queries.packets(deviceID: deviceID, limit: limit)
        return JSONBody.response([
            "success": true, "device_id": .string(deviceID), "count": .int(Int64(rows.count)),
            "packets": .array(
                rows.map { row in
                    .object([
                        ("nonce", .int(Int64(row.nonce))), ("packet_index", .int(Int64(row.packetIndex))),
                        ("marker", row.marker.map { .string(HexCoding.byteLabel($0)) } ?? .null),
                        ("method", .string(row.method)),
                        ("register_layout", .array(row.registerLayout.map { .int(Int64($0)) })),
                        ("sample_count", .int(Int64(row.sampleCount))),
                        ("last_sample_time", .string(Self.iso(row.lastSampleMs))), ("decoded", .bool(row.decoded)),
                        ("approximate", .bool(row.approximate)), ("truncated", .bool(row.truncated)),
                        ("partial", .bool(row.decoded && row.truncated)), ("time_estimated", .bool(row.timeEstimated)),
                        ("reason", row.reason.map { .string($0) } ?? .null), ("detail", row.detail.map { .string($0) } ?? .null),
                        ("raw_hex", row.blob.map { .string(HexCoding.encode($0)) } ?? .null),
                    ])
                }
            ),
        ])
    }

    static func sampleMembers(_ sample: SampleRow) -> [(String, JSONValue)] {
        let registers: [(String, JSONValue)] = zip(sample.registerLayout, sample.rawValues).compactMap { id, raw in
            Register(rawValue: id).map { ($0.name, .double($0.scaled(raw))) }
        }
        return [
            ("timestamp", .string(iso(sample.timestampMs))), ("timestamp_ms", .int(sample.timestampMs)),
            ("registers", .object(registers)), ("raw_values", .array(sample.rawValues.map { .int(Int64($0)) })),
            ("register_layout", .array(sample.registerLayout.map { .int(Int64($0)) })),
            ("compression_method", .string(sample.method)), ("compression_ratio", .double(sample.ratio)),
            ("approximate", .bool(sample.approximate)), ("time_estimated", .bool(sample.timeEstimated)),
        ]
    }

    /// Exact ISO-8601 UTC with milliseconds (formatting through a `Double` fraction would lose a millisecond).
    static func iso(_ ms: Int64) -> String { EpochTime.iso8601(milliseconds: ms) }

    /// Epoch seconds (integer or decimal) or an ISO-8601 date-time.
    static func parseTime(_ text: String, name: String) throws -> Int64 {
        if let seconds = Double(text), seconds.isFinite, abs(seconds) < 1e11 { return Int64(seconds * 1000) }
        for style in [
            Date.ISO8601FormatStyle(includingFractionalSeconds: true), Date.ISO8601FormatStyle(),
        ] {
            if let date = try? style.parse(text) { return Int64(date.timeIntervalSince1970 * 1000) }
        }
        throw APIError(.badRequest, "\(name) must be epoch seconds or an ISO-8601 date-time")
    }
}
