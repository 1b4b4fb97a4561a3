import EcoWattSimulator
import Synchronization
import Testing

/// The newest progress report of a simulation, for tests that act on what the devices did rather than on wall time
/// (a busy test process on 2 cores runs the devices slower than their schedule).
public final class LatestReport: Sendable {
    private let value = Mutex<SimulationReport?>(nil)

    public init() {}

    public func set(_ report: SimulationReport) { value.withLock { $0 = report } }

    public func get() -> SimulationReport? { value.withLock { $0 } }

    /// Waits (up to `timeout`) until the newest report satisfies `condition`; records an issue if it never does. The
    /// default is generous: it costs nothing when the devices are on time, and beside a busy test run they were not.
    public func wait(
        timeout: Duration = .seconds(120),
        until condition: (SimulationReport) -> Bool,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let report = get(), condition(report) { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("condition not reached: \(get()?.rendered() ?? "no report yet")", sourceLocation: sourceLocation)
    }
}
