import EcoWattProtocol
import Foundation

/// Response statuses of one route.
public struct RouteCounts: Sendable, Equatable {
    /// HTTP status → count.
    public var statuses: [Int: Int] = [:]
    /// Requests that got no response (timeout, refused, reset).
    public var transportErrors = 0

    public var total: Int { statuses.values.reduce(0, +) + transportErrors }

    mutating func record(status: Int?) {
        if let status { statuses[status, default: 0] += 1 } else { transportErrors += 1 }
    }
}

/// Latency percentiles of one route, in milliseconds.
public struct LatencySummary: Sendable, Equatable {
    public var count: Int
    public var p50: Double
    public var p90: Double
    public var p99: Double
    public var max: Double

    init(samplesUs: [UInt32]) {
        let sorted = samplesUs.sorted()
        count = sorted.count
        func at(_ fraction: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]) / 1000
        }
        p50 = at(0.5)
        p90 = at(0.9)
        p99 = at(0.99)
        max = at(1)
    }
}

/// A command a simulated device executed.
public struct ExecutedCommand: Sendable, Equatable {
    public var deviceID: String
    public var commandID: String
    public var action: String
    /// `success` or `failed`, as reported.
    public var status: String
    /// Whether `POST /commands/{id}/result` was answered 200.
    public var reported: Bool
}

/// A firmware update a simulated device attempted.
public struct FirmwareUpdateOutcome: Sendable, Equatable {
    public var deviceID: String
    public var fromVersion: String
    public var toVersion: String
    /// `nil` when the image was downloaded and passed every device check (SHA-256, RSA); otherwise the failure.
    public var failure: String?
    public var chunks: Int
    /// Real seconds from the offer to the end: the reboot into the new version, or the failure.
    public var seconds: Double
}

/// Everything a run did, by route and by device activity.
public struct SimulationReport: Sendable {
    /// Real seconds the run took.
    public var elapsedSeconds: Double = 0
    /// Route template (`POST /aggregated/{id}`) → statuses.
    public var requests: [String: RouteCounts] = [:]
    /// Route template → latency percentiles.
    public var latency: [String: LatencySummary] = [:]
    /// `route: reason` → count, for transport failures and unexpected statuses.
    public var errors: [String: Int] = [:]

    public var samplesRead = 0
    /// Readings the device overwrote in its 50-sample buffer before an upload period took them.
    public var samplesOverwritten = 0
    /// Readings in packets the full 20-slot ring dropped.
    public var samplesDropped = 0
    /// Readings never uploaded: still on a device when the run ended, or lost with its RAM at a reboot.
    public var samplesUnsent = 0
    /// With an operator token: readings found among the server's samples with the value read and a time within
    /// ``sampleTimeToleranceMs`` of the reading (exactly), or with a lossy 0x50 value (approximately).
    public var samplesStoredExactly: Int?
    public var samplesStoredApproximately: Int?
    /// The largest time error of a sample stored exactly (ms).
    public var worstSampleTimeErrorMs: Int64?
    public var packetsCompressed = 0
    /// Packets compressed, by marker (`0x01`, `0xD0`, `0x50`, `0x71`).
    public var packetsByMarker: [String: Int] = [:]
    /// Packets lost because the 20-slot upload ring overflowed.
    public var packetsDropped = 0
    public var uploadsAccepted = 0
    public var uploadsRejected = 0
    /// Attempts that failed on the device before sending (inner JSON ≥ 4095 bytes).
    public var uploadsFailedLocally = 0
    public var packetsUploaded = 0
    /// Packets per accepted request → number of requests (the firmware sends at most 8).
    public var packetsPerUpload: [Int: Int] = [:]
    public var samplesUploaded = 0
    public var commands: [ExecutedCommand] = []
    public var configsApplied = 0
    public var energyReports = 0
    /// Modbus faults posted to `POST /fault/recovery` (recovered, failed).
    public var faultsRecovered = 0
    public var faultsFailed = 0
    public var boots = 0
    public var firmwareUpdates: [FirmwareUpdateOutcome] = []

    public var totalRequests: Int { requests.values.reduce(0) { $0 + $1.total } }

    /// True when every request got the status the firmware counts as success and nothing failed locally.
    public var isClean: Bool { errors.isEmpty && uploadsRejected == 0 && uploadsFailedLocally == 0 }

    /// The human-readable report `ecowatt simulate` prints.
    public func rendered() -> String {
        var lines: [String] = []
        let rate = elapsedSeconds > 0 ? Double(totalRequests) / elapsedSeconds : 0
        lines.append(String(format: "%d requests in %.1f s (%.0f/s)", totalRequests, elapsedSeconds, rate))
        lines.append("")
        let width = max(24, (requests.keys.map(\.count).max() ?? 0) + 2)
        func pad(_ text: String, _ count: Int) -> String {
            text.count >= count ? text : text + String(repeating: " ", count: count - text.count)
        }
        lines.append(pad("route", width) + pad("requests", 10) + pad("statuses", 22) + "p50 ms   p90 ms   p99 ms   max ms")
        for route in requests.keys.sorted() {
            let counts = requests[route]!
            var statuses = counts.statuses.keys.sorted().map { "\($0)×\(counts.statuses[$0]!)" }
            if counts.transportErrors > 0 { statuses.append("err×\(counts.transportErrors)") }
            let summary = latency[route]
            let figures = [summary?.p50, summary?.p90, summary?.p99, summary?.max].map {
                pad(String(format: "%.2f", $0 ?? 0), 9)
            }.joined()
            lines.append(pad(route, width) + pad(String(counts.total), 10) + pad(statuses.joined(separator: " "), 22) + figures)
        }
        lines.append("")
        let markers = packetsByMarker.keys.sorted().map { "\($0)×\(packetsByMarker[$0]!)" }.joined(separator: " ")
        lines.append("devices: \(boots) boots; samples read \(samplesRead); packets compressed \(packetsCompressed) (\(markers))")
        if let exactly = samplesStoredExactly {
            lines.append(
                "samples: \(samplesRead) read, \(exactly) stored exactly, \(samplesStoredApproximately ?? 0) approximately (0x50), "
                    + "\(samplesRead - exactly - (samplesStoredApproximately ?? 0)) not stored (\(samplesOverwritten) overwritten and "
                    + "\(samplesDropped) dropped on the devices, \(samplesUnsent) not sent before a reboot or the end); "
                    + "worst time error \(worstSampleTimeErrorMs ?? 0) ms"
            )
        }
        lines.append(
            "uploads: \(uploadsAccepted) accepted, \(uploadsRejected) rejected, \(uploadsFailedLocally) failed locally; "
                + "\(packetsUploaded) packets / \(samplesUploaded) samples delivered; \(packetsDropped) packets dropped by the ring"
        )
        let succeeded = commands.filter { $0.status == "success" }.count
        let unreported = commands.filter { !$0.reported }.count
        lines.append(
            "commands: \(commands.count) executed (\(succeeded) success, \(commands.count - succeeded) failed), \(unreported) results not acknowledged"
        )
        lines.append(
            "config: \(configsApplied) updates applied and acknowledged; energy reports: \(energyReports); "
                + "Modbus faults: \(faultsRecovered) recovered, \(faultsFailed) failed"
        )
        let verified = firmwareUpdates.filter { $0.failure == nil }
        if requests["GET /ota/check/{id}"] == nil {
            // The firmware checks every 6000 s by default: a short run makes none, which is easy to mistake for a
            // deployment that does not work.
            lines.append(
                "firmware: no firmware check was due in this run (one every --ota-interval device seconds, "
                    + "none without --keys-dir): lower --ota-interval to see a deployed update installed"
            )
        } else {
            lines.append("firmware: \(firmwareUpdates.count) downloads, \(verified.count) verified and installed")
        }
        for update in firmwareUpdates where update.failure != nil {
            lines.append("  \(update.deviceID) \(update.fromVersion) → \(update.toVersion): \(update.failure!)")
        }
        if !errors.isEmpty {
            lines.append("")
            lines.append("errors:")
            for (message, count) in errors.sorted(by: { $0.value > $1.value }).prefix(20) {
                lines.append("  \(count)× \(message)")
            }
        }
        return lines.joined(separator: "\n")
    }
}

extension SimulationReport {
    /// The report as JSON, for scripts and CI (`ecowatt simulate --report-json FILE`).
    public var json: JSONValue {
        func counts(_ values: [String: Int]) -> JSONValue {
            .object(values.sorted { $0.key < $1.key }.map { ($0.key, .int(Int64($0.value))) })
        }
        let routes: [(String, JSONValue)] = requests.keys.sorted().map { route in
            let counts = requests[route]!
            let summary = latency[route]
            return (
                route,
                .object([
                    ("requests", .int(Int64(counts.total))),
                    ("statuses", .object(counts.statuses.keys.sorted().map { (String($0), .int(Int64(counts.statuses[$0]!))) })),
                    ("transport_errors", .int(Int64(counts.transportErrors))),
                    (
                        "latency_ms",
                        .object([
                            ("p50", .double(summary?.p50 ?? 0)), ("p90", .double(summary?.p90 ?? 0)),
                            ("p99", .double(summary?.p99 ?? 0)), ("max", .double(summary?.max ?? 0)),
                        ])
                    ),
                ])
            )
        }
        return .object([
            ("clean", .bool(isClean)),
            ("elapsed_seconds", .double(elapsedSeconds)),
            ("total_requests", .int(Int64(totalRequests))),
            ("routes", .object(routes)),
            ("errors", counts(errors)),
            ("boots", .int(Int64(boots))),
            ("samples_read", .int(Int64(samplesRead))),
            ("samples_overwritten", .int(Int64(samplesOverwritten))),
            ("samples_dropped", .int(Int64(samplesDropped))),
            ("samples_unsent", .int(Int64(samplesUnsent))),
            ("samples_stored_exactly", samplesStoredExactly.map { .int(Int64($0)) } ?? .null),
            ("samples_stored_approximately", samplesStoredApproximately.map { .int(Int64($0)) } ?? .null),
            ("worst_sample_time_error_ms", worstSampleTimeErrorMs.map { .int($0) } ?? .null),
            ("packets_compressed", .int(Int64(packetsCompressed))),
            ("packets_by_marker", counts(packetsByMarker)),
            ("packets_dropped", .int(Int64(packetsDropped))),
            ("uploads_accepted", .int(Int64(uploadsAccepted))),
            ("uploads_rejected", .int(Int64(uploadsRejected))),
            ("uploads_failed_locally", .int(Int64(uploadsFailedLocally))),
            ("packets_uploaded", .int(Int64(packetsUploaded))),
            ("samples_uploaded", .int(Int64(samplesUploaded))),
            ("packets_per_upload", counts(Dictionary(uniqueKeysWithValues: packetsPerUpload.map { (String($0.key), $0.value) }))),
            (
                "commands",
                .array(
                    commands.map {
                        .object([
                            ("device_id", .string($0.deviceID)), ("command_id", .string($0.commandID)),
                            ("action", .string($0.action)), ("status", .string($0.status)), ("reported", .bool($0.reported)),
                        ])
                    }
                )
            ),
            ("configs_applied", .int(Int64(configsApplied))),
            ("energy_reports", .int(Int64(energyReports))),
            ("faults_recovered", .int(Int64(faultsRecovered))),
            ("faults_failed", .int(Int64(faultsFailed))),
            (
                "firmware_updates",
                .array(
                    firmwareUpdates.map {
                        .object([
                            ("device_id", .string($0.deviceID)), ("from_version", .string($0.fromVersion)),
                            ("to_version", .string($0.toVersion)), ("chunks", .int(Int64($0.chunks))),
                            ("seconds", .double($0.seconds)),
                            ("failure", $0.failure.map(JSONValue.string) ?? .null),
                        ])
                    }
                )
            ),
        ])
    }
}
