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

        await withTaskGroup(of: Void.self) { group in
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
                }
            }
            group.addTask {
                // Progress and NVS checkpoints until the devices are done. The headroom (more than a device spends in a
                // second, less than the server's nonce-jump allowance of 1024) keeps a killed run from replaying.
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    if Task.isCancelled { return }
                    try? nonces.save(headroom: 256)
                    progress?(
                        Progress(
                            elapsedSeconds: clock.elapsedSeconds,
                            durationSeconds: options.duration,
                            report: statistics.snapshot(latency: false)
                        )
                    )
                }
            }
            // The devices finish first; then stop the progress task.
            for _ in 0..<options.devices { await group.next() }
            group.cancelAll()
        }
        try? await client.shutdown()
        try nonces.save()
        var report = statistics.snapshot(latency: true)
        report.elapsedSeconds = clock.elapsedSeconds
        return report
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
