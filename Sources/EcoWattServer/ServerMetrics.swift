import CoreMetrics
import Metrics
import Prometheus
import Synchronization

/// The server's metrics: swift-metrics instruments backed by a Prometheus registry owned by this server (not the
/// process-wide `MetricsSystem`, so several servers in one process, as in the tests, keep separate figures).
public final class ServerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory
    private let counters = Mutex<[String: CoreMetrics.Counter]>([:])
    private let timers = Mutex<[String: CoreMetrics.Timer]>([:])
    private let gauges = Mutex<[String: CoreMetrics.Gauge]>([:])
    /// Values sampled when scraped (devices online, active sessions, backlogs).
    private let samplers = Mutex<[(String, @Sendable () -> Double)]>([])

    public init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5),
        ]
        self.factory = factory
    }

    static func key(_ name: String, _ dimensions: [(String, String)]) -> String {
        dimensions.reduce(name) { $0 + "|" + $1.0 + "=" + $1.1 }
    }

    /// Adds `amount` to the counter `name` with `dimensions`.
    public func increment(_ name: String, _ dimensions: [(String, String)] = [], by amount: Int = 1) {
        guard amount > 0 else { return }
        let key = Self.key(name, dimensions)
        let counter = counters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = CoreMetrics.Counter(label: name, dimensions: dimensions, factory: factory)
            counters[key] = counter
            return counter
        }
        counter.increment(by: amount)
    }

    /// Records a duration in the histogram `name`.
    public func record(_ name: String, _ dimensions: [(String, String)] = [], duration: Duration) {
        let key = Self.key(name, dimensions)
        let timer = timers.withLock { timers in
            if let timer = timers[key] { return timer }
            let timer = CoreMetrics.Timer(label: name, dimensions: dimensions, factory: factory)
            timers[key] = timer
            return timer
        }
        let (seconds, attoseconds) = duration.components
        timer.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// Registers a gauge whose value is read at each scrape.
    public func sample(_ name: String, _ value: @escaping @Sendable () -> Double) {
        samplers.withLock { $0.append((name, value)) }
    }

    /// The Prometheus text exposition of every metric, with the sampled gauges refreshed first.
    public func exposition() -> [UInt8] {
        for (name, value) in samplers.withLock({ $0 }) {
            let gauge = gauges.withLock { gauges in
                if let gauge = gauges[name] { return gauge }
                let gauge = CoreMetrics.Gauge(label: name, dimensions: [], factory: factory)
                gauges[name] = gauge
                return gauge
            }
            gauge.record(value())
        }
        return registry.emitToBuffer()
    }
}
