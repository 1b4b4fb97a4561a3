/// How finely rolled-up telemetry is kept (issue 17).
public enum RollupResolution: String, Sendable, CaseIterable, Codable {
    case minute, hour

    public var milliseconds: Int64 {
        switch self {
        case .minute: 60_000
        case .hour: 3_600_000
        }
    }

    /// The start of the bucket `time` falls in (floor, also for times before 1970). Sample times come from devices:
    /// the first bucket before `Int64.min` wraps instead of trapping.
    public func bucket(of time: Int64) -> Int64 {
        let (quotient, remainder) = time.quotientAndRemainder(dividingBy: milliseconds)
        return (remainder < 0 ? quotient - 1 : quotient) &* milliseconds
    }
}

/// Minimum, maximum, sum and count of one register's raw values in one bucket.
public struct RegisterStatistics: Sendable, Equatable {
    public var register: Int
    public var count: Int
    public var minimum: UInt16
    public var maximum: UInt16
    /// Sum of raw values (at most 4096 × 65535 per packet; a bucket's sum fits 64 bits by far).
    public var sum: UInt64

    public init(register: Int, count: Int, minimum: UInt16, maximum: UInt16, sum: UInt64) {
        self.register = register
        self.count = count
        self.minimum = minimum
        self.maximum = maximum
        self.sum = sum
    }

    public var mean: Double { count > 0 ? Double(sum) / Double(count) : 0 }

    mutating func add(_ value: UInt16) {
        count += 1
        minimum = Swift.min(minimum, value)
        maximum = Swift.max(maximum, value)
        sum &+= UInt64(value)
    }
}

/// One bucket of a device's telemetry: the samples in `[bucketMs, bucketMs + resolution)`, per register.
public struct TelemetryRollup: Sendable, Equatable {
    public var bucketMs: Int64
    public var sampleCount: Int
    /// By register id, ascending.
    public var registers: [RegisterStatistics]

    public init(bucketMs: Int64, sampleCount: Int = 0, registers: [RegisterStatistics] = []) {
        self.bucketMs = bucketMs
        self.sampleCount = sampleCount
        self.registers = registers
    }

    /// Adds one sample (raw values in `layout` order).
    public mutating func add(layout: [Int], values: [UInt16]) {
        sampleCount += 1
        for (register, value) in zip(layout, values) {
            if let index = registers.firstIndex(where: { $0.register == register }) {
                registers[index].add(value)
            } else {
                registers.append(RegisterStatistics(register: register, count: 1, minimum: value, maximum: value, sum: UInt64(value)))
                registers.sort { $0.register < $1.register }
            }
        }
    }

    /// The rollups of `samples` (time, layout, raw values) at `resolution`, by bucket.
    public static func aggregate(
        _ samples: some Sequence<(time: Int64, layout: [Int], values: [UInt16])>,
        resolution: RollupResolution
    ) -> [Int64: TelemetryRollup] {
        var buckets: [Int64: TelemetryRollup] = [:]
        for sample in samples {
            let bucket = resolution.bucket(of: sample.time)
            buckets[bucket, default: TelemetryRollup(bucketMs: bucket)].add(layout: sample.layout, values: sample.values)
        }
        return buckets
    }

    /// The statistics as one blob: sample count, register count, then per register id, count, minimum, maximum and
    /// sum (varints).
    public func encodedStatistics() -> [UInt8] {
        var writer = ByteWriter(capacity: 4 + registers.count * 10)
        writer.unsigned(sampleCount)
        writer.unsigned(registers.count)
        for entry in registers {
            writer.signed(Int64(entry.register))
            writer.unsigned(entry.count)
            writer.unsigned(UInt64(entry.minimum))
            writer.unsigned(UInt64(entry.maximum))
            writer.unsigned(entry.sum)
        }
        return writer.bytes
    }

    public init(bucketMs: Int64, decodingStatistics bytes: [UInt8]) throws(StoredBlobError) {
        var reader = ByteReader(bytes)
        self.init(bucketMs: bucketMs, sampleCount: try reader.count(in: 0...Int(Int32.max)))
        for _ in 0..<(try reader.count(in: 0...64)) {
            let register = Int(truncatingIfNeeded: try reader.signed())
            let count = try reader.count(in: 0...Int(Int32.max))
            let minimum = UInt16(truncatingIfNeeded: try reader.unsigned())
            let maximum = UInt16(truncatingIfNeeded: try reader.unsigned())
            registers.append(RegisterStatistics(register: register, count: count, minimum: minimum, maximum: maximum, sum: try reader.unsigned()))
        }
        guard reader.isAtEnd else { throw StoredBlobError("rollup has bytes after its last register") }
    }
}

/// What telemetry retention keeps (issue 17): raw packets by when they arrived (a device with a wrong clock cannot
/// make its data vanish or stay), rollups by their bucket.
public struct TelemetryCutoffs: Sendable, Equatable {
    /// Raw packets that arrived before this are dropped (with whole chunks, so up to an hour later).
    public var rawBeforeMs: Int64
    public var minuteBeforeMs: Int64
    public var hourBeforeMs: Int64

    public init(rawBeforeMs: Int64, minuteBeforeMs: Int64, hourBeforeMs: Int64) {
        self.rawBeforeMs = rawBeforeMs
        self.minuteBeforeMs = minuteBeforeMs
        self.hourBeforeMs = hourBeforeMs
    }

    /// Whether a stored chunk (its encoded blob) arrived before the raw cutoff: a chunk that does not decode counts as
    /// old, so that a damaged row never blocks retention.
    public func dropsChunk(_ encoded: [UInt8]) -> Bool {
        ((try? TelemetryChunk(decoding: encoded))?.createdMs ?? Int64.min) < rawBeforeMs
    }

    /// Rollups of `resolution` whose bucket starts before this are dropped.
    public func rollupsBeforeMs(_ resolution: RollupResolution) -> Int64 {
        resolution == .minute ? minuteBeforeMs : hourBeforeMs
    }

    /// The cutoffs at `nowMs` for raw data kept `rawDays` (minute rollups as long) and hour rollups `rollupDays`.
    public init(nowMs: Int64, rawDays: Int, rollupDays: Int) {
        let day: Int64 = 86_400_000
        let raw = nowMs &- Int64(rawDays) &* day
        self.init(rawBeforeMs: raw, minuteBeforeMs: raw, hourBeforeMs: nowMs &- Int64(rollupDays) &* day)
    }
}

/// The hours a rollup refresh recomputes for one device, the same for every backend: whole hours around the changed
/// range, never at or below the latest sample time retention dropped (`floorMs`: those hours keep their rollups), and at
/// most a day per refresh (`to` < `end`: the rest waits for the next refresh, from `to + 1`).
public struct RollupRefreshRange: Sendable, Equatable {
    public static let maxSpanMs: Int64 = 86_400_000

    public var from: Int64
    public var to: Int64
    public var end: Int64

    /// `nil` when nothing of the changed range may be recomputed.
    public init?(changedFrom: Int64, changedTo: Int64, floorMs: Int64?) {
        let hour = RollupResolution.hour
        from = hour.bucket(of: changedFrom)
        if let floorMs { from = max(from, hour.bucket(of: floorMs) &+ hour.milliseconds) }
        end = hour.bucket(of: changedTo) &+ (hour.milliseconds - 1)
        guard from <= end else { return nil }
        let span = end.subtractingReportingOverflow(from)
        to = span.overflow || span.partialValue >= Self.maxSpanMs ? from &+ (Self.maxSpanMs - 1) : end
    }
}
