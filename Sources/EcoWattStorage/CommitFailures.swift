import Logging
import Synchronization

/// A writer's run of failed transactions: batches that did not commit (a job rolled back alone inside a committed batch
/// is not one). A run lasts until `window` passed without a failed commit; on a nearly full disk some commits still
/// succeed between the failures, and they neither end it nor make the writer ready in between. Once a run has
/// `sustained` failed commits the writer is not ready until it ends (`GET /ready`, so that a load balancer or a monitor
/// sees it); a single failure (a PostgreSQL deadlock that outlived its retries, say) does not take an instance out of a
/// load balancer for 10 s. The log gets the run's first failure, a reminder at most once per `remindEvery` with the
/// count, and its end, not a line per batch: with the disk full, every batch of a 20-device simulation failed, 634 lines
/// in 40 s.
public final class CommitFailures: Sendable {
    /// What the writer's log is to say.
    public enum Report: Sendable, Equatable {
        /// The first failed commit of a run.
        case started(error: String)
        /// The run goes on: `batches` failed commits in `seconds`.
        case ongoing(batches: Int, seconds: Int64, error: String)
        /// A commit succeeded after a run of `batches` failed ones over `seconds`.
        case ended(batches: Int, seconds: Int64)

        /// The log line.
        public var message: String {
            switch self {
            case .started: "writes are failing: a group commit did not commit"
            case .ongoing(let batches, let seconds, _): "writes are still failing: \(batches) group commits failed in \(seconds) s"
            case .ended(let batches, let seconds): "writes commit again, after \(batches) failed group commits over \(seconds) s"
            }
        }

        /// The error of the last failed commit (`nil` for ``ended(batches:seconds:)``).
        public var error: String? {
            switch self {
            case .started(let error), .ongoing(_, _, let error): error
            case .ended: nil
            }
        }
    }

    private struct Run {
        var since: ContinuousClock.Instant
        var last: ContinuousClock.Instant
        var reported: ContinuousClock.Instant
        var batches: Int
        var error: String
    }

    private let run = Mutex<Run?>(nil)
    private let total = Atomic<Int>(0)
    private let logger: Logger
    private let remindEvery: Duration
    private let window: Duration
    private let sustained: Int

    /// - Parameter window: how long without a failed commit ends a run. A writer that gets no work is ready again after
    ///   it (one would otherwise stay not ready for ever once a load balancer took it out).
    public init(logger: Logger, remindEvery: Duration = .seconds(60), window: Duration = .seconds(10), sustained: Int = 5) {
        self.logger = logger
        self.remindEvery = remindEvery
        self.window = window
        self.sustained = sustained
    }

    /// Records a failed commit with its error (as a log shows it), and logs it when it starts a run or is due as a
    /// reminder.
    @discardableResult
    public func failed(_ error: String, now: ContinuousClock.Instant = .now) -> Report? {
        total.add(1, ordering: .relaxed)
        let (ended, report) = run.withLock { run -> (Report?, Report?) in
            // A run that ended without a commit to say so (no work came).
            let ended = run.flatMap { now - $0.last >= window ? Self.end($0) : nil }
            if ended != nil { run = nil }
            guard var current = run else {
                run = Run(since: now, last: now, reported: now, batches: 1, error: error)
                return (ended, .started(error: error))
            }
            current.batches += 1
            current.last = now
            current.error = error
            defer { run = current }
            guard now - current.reported >= remindEvery else { return (nil, nil) }
            current.reported = now
            return (nil, .ongoing(batches: current.batches, seconds: (now - current.since).components.seconds, error: error))
        }
        _ = log(ended)
        return log(report)
    }

    /// Records a commit, and logs ``Report/ended(batches:seconds:)`` when it ends a run of failures (the last failure
    /// is `window` ago).
    @discardableResult
    public func committed(now: ContinuousClock.Instant = .now) -> Report? {
        log(
            run.withLock { run -> Report? in
                guard let current = run, now - current.last >= window else { return nil }
                run = nil
                return Self.end(current)
            }
        )
    }

    private static func end(_ run: Run) -> Report {
        .ended(batches: run.batches, seconds: (run.last - run.since).components.seconds)
    }

    private func log(_ report: Report?) -> Report? {
        guard let report else { return nil }
        if let error = report.error {
            logger.error("\(report.message)", metadata: ["error": "\(error)"])
        } else {
            logger.notice("\(report.message)")
        }
        return report
    }

    /// Failed commits since start.
    public var count: Int { total.load(ordering: .relaxed) }

    /// Why the writer is not ready, or `nil`: no run of at least `sustained` failed commits, or none in the last `window`.
    public func notReady(now: ContinuousClock.Instant = .now) -> String? {
        run.withLock { run in
            guard let run, run.batches >= sustained, now - run.last < window else { return nil }
            return "writes failing for \((now - run.since).components.seconds) s (\(run.batches) group commits): \(run.error)"
        }
    }
}
