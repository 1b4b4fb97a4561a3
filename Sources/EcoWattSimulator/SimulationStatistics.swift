import Synchronization

/// What the simulated devices did, collected from all device tasks.
final class SimulationStatistics: Sendable {
    struct State: Sendable {
        var report = SimulationReport()
        var latenciesUs: [String: [UInt32]] = [:]
    }

    private let state = Mutex(State())

    /// Records one HTTP exchange (`status` nil: no response, `error` says why).
    func request(route: String, status: Int?, latencyNs: UInt64, error: String? = nil) {
        state.withLock {
            $0.report.requests[route, default: RouteCounts()].record(status: status)
            if let error { $0.report.errors["\(route): \(error)", default: 0] += 1 }
            $0.latenciesUs[route, default: []].append(UInt32(min(latencyNs / 1000, UInt64(UInt32.max))))
        }
    }

    func update(_ body: (inout SimulationReport) -> Void) {
        state.withLock { body(&$0.report) }
    }

    /// The report so far; with `latency`, also the percentiles (which sort every sample recorded, so the progress
    /// reports taken once a second leave them out).
    func snapshot(latency: Bool) -> SimulationReport {
        state.withLock { state in
            var report = state.report
            guard latency else { return report }
            for (route, samples) in state.latenciesUs {
                report.latency[route] = LatencySummary(samplesUs: samples)
            }
            return report
        }
    }
}
