import Foundation

/// Device time for a run: starts at the wall clock and advances `speed` times faster than it.
struct SimulationClock: Sendable {
    let speed: Double
    let startedAt: ContinuousClock.Instant
    let startEpochMs: Int64

    init(speed: Double) {
        self.speed = speed
        startedAt = .now
        startEpochMs = Int64(Date().timeIntervalSince1970 * 1000)
    }

    /// Real seconds since the run started.
    var elapsedSeconds: Double {
        let elapsed = ContinuousClock.now - startedAt
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    /// Current device time, Unix milliseconds.
    var nowMs: Int64 {
        startEpochMs + Int64(elapsedSeconds * speed * 1000)
    }

    /// Real instant at which the device clock reads `ms`.
    func instant(atDeviceMs ms: Int64) -> ContinuousClock.Instant {
        startedAt + .milliseconds(Int64(Double(ms - startEpochMs) / speed))
    }

    /// Sleeps for `seconds` of device time.
    func sleep(deviceSeconds seconds: Double) async throws {
        guard seconds > 0 else { return }
        try await Task.sleep(for: .milliseconds(Int64(seconds * 1000 / speed)))
    }
}
