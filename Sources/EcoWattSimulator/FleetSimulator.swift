import AsyncHTTPClient
import EcoWattProtocol
import Foundation
import NIOCore

/// Runs a fleet of simulated devices against a server and reports what happened.
public struct FleetSimulator: Sendable {
    /// Live figures for a progress line.
    public struct Progress: Sendable {
        public var elapsedSeconds: Double
        public var durationSeconds: Double
        /// The counts so far (`latency` stays empty until the final report).
        public var report: SimulationReport
    }

    public let options: SimulationOptions

    public init(options: SimulationOptions) throws {
        guard options.devices > 0 else { throw SimulationError.invalidOption("--devices must be at least 1") }
        guard options.duration > 0 else { throw SimulationError.invalidOption("--duration must be positive") }
        guard options.speed > 0 else { throw SimulationError.invalidOption("--speed must be positive") }
        guard !options.registers.isEmpty else { throw SimulationError.invalidOption("at least one register") }
        guard let url = URL(string: options.baseURL), url.scheme == "http" || url.scheme == "https", url.host != nil
        else { throw SimulationError.invalidOption("--url must be an http(s) URL, got \(options.baseURL)") }
        self.options = options
    }

    /// Runs for `options.duration` real seconds; `progress` is called about once a second.
    ///
    /// - Parameter stop: ends the run early and gracefully; the report is still returned. Cancelling the calling task
    ///   ends it at once instead (requests in flight are abandoned).
    public func run(
        stop: SimulationStop = SimulationStop(),
        progress: (@Sendable (Progress) -> Void)? = nil
    ) async throws -> SimulationReport {
        let nonces = try NonceStore(file: options.nonceFile)
        let statistics = SimulationStatistics()
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(
            idleTimeout: .seconds(60),
            concurrentHTTP1ConnectionsPerHostSoftLimit: max(options.devices, 8)
        )
        configuration.timeout = .init(connect: .seconds(3))
        // The firmware's HTTPClient fails at once on a refused connection; so do the simulated devices.
        configuration.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let clock = SimulationClock(speed: options.speed)
        let end = clock.startedAt + .milliseconds(Int64(options.duration * 1000))
        let base = options.baseURL.hasSuffix("/") ? String(options.baseURL.dropLast()) : options.baseURL
        let rampUp = options.rampUp ?? min(options.intervals.upload / options.speed, options.duration / 2)
        let options = self.options

        let readings = await withTaskGroup(of: (String, [SimulatedDevice.Reading])?.self) { group in
            for index in 0..<options.devices {
                let id = options.deviceID(index)
                let connection = DeviceConnection(client: client, baseURL: base, statistics: statistics)
                let offset = rampUp * Double(index) / Double(options.devices)
                group.addTask {
                    try? await Task.sleep(for: .milliseconds(Int64(offset * 1000)))
                    var device = SimulatedDevice(
                        id: id,
                        options: options,
                        connection: connection,
                        clock: clock,
                        statistics: statistics,
                        nonces: nonces,
                        seed: options.seed &* 1_000_003 &+ UInt64(index)
                    )
                    await device.run(until: end, stop: stop)
                    return (id, device.readings ?? [])
                }
            }
            group.addTask {
                // Progress and NVS checkpoints until the devices are done. The headroom (more than a device spends in a
                // second, less than the server's nonce-jump allowance of 1024) keeps a killed run from replaying.
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    if Task.isCancelled { return nil }
                    try? nonces.save(headroom: 256)
                    progress?(
                        Progress(
                            elapsedSeconds: clock.elapsedSeconds,
                            durationSeconds: options.duration,
                            report: statistics.snapshot(latency: false)
                        )
                    )
                }
                return nil
            }
            // The devices finish first; then stop the progress task.
            var readings: [String: [SimulatedDevice.Reading]] = [:]
            for _ in 0..<options.devices {
                if case .some(.some(let (id, device))) = await group.next() { readings[id] = device }
            }
            group.cancelAll()
            return readings
        }
        var verified: SampleVerification.Outcome?
        if let token = options.operatorToken {
            do {
                verified = try await Self.verify(
                    readings,
                    with: SampleVerification(client: client, baseURL: base, token: token),
                    clockSkewMs: Int64(clock.elapsedSeconds * max(0, options.speed - 1) * 1000) + 2_000
                )
            } catch {
                try? await client.shutdown()
                throw error
            }
        }
        try? await client.shutdown()
        try nonces.save()
        var report = statistics.snapshot(latency: true)
        report.elapsedSeconds = clock.elapsedSeconds
        report.samplesStoredExactly = verified?.exactly
        report.samplesStoredApproximately = verified?.approximately
        report.worstSampleTimeErrorMs = verified?.worstErrorMs
        return report
    }

    /// Reads every device's samples back, eight devices at a time, and matches them with its readings.
    static func verify(
        _ readings: [String: [SimulatedDevice.Reading]],
        with verification: SampleVerification,
        clockSkewMs: Int64
    ) async throws -> SampleVerification.Outcome {
        var total = SampleVerification.Outcome()
        let devices = readings.filter { !$0.value.isEmpty }.sorted { $0.key < $1.key }
        for start in stride(from: 0, to: devices.count, by: 8) {
            try await withThrowingTaskGroup(of: SampleVerification.Outcome.self) { group in
                for (id, device) in devices[start..<min(start + 8, devices.count)] {
                    group.addTask {
                        let times = device.map(\.timeMs)
                        let stored = try await verification.stored(
                            deviceID: id,
                            fromMs: times.min()! - 86_400_000,
                            toMs: times.max()! + 86_400_000
                        )
                        return SampleVerification.match(device, stored, clockSkewMs: clockSkewMs)
                    }
                }
                for try await outcome in group {
                    total.exactly += outcome.exactly
                    total.approximately += outcome.approximately
                    total.worstErrorMs = max(total.worstErrorMs, outcome.worstErrorMs)
                }
            }
        }
        return total
    }
}

/// Why a simulation could not start.
public enum SimulationError: Error, CustomStringConvertible {
    case invalidOption(String)

    public var description: String {
        switch self {
        case .invalidOption(let reason): reason
        }
    }
}
