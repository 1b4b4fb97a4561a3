import Dispatch
import Synchronization

/// The queue in front of a backend's single writer (SQLite's ``GroupCommitWriter``, PostgreSQL's writer): callers
/// queue work synchronously (so submissions from one caller keep their order), and the writer's loop takes everything
/// waiting as one batch for one transaction.
public final class BatchQueue<Job: Sendable>: Sendable {
    private struct State {
        var queue: [Job] = []
        var waiter: CheckedContinuation<Void, Never>?
        /// A thread blocked in ``nextBatchBlocking()`` (it waits on `wakeup`).
        var threadWaiting = false
        var finished = false
        var running = false
        var batches = 0
        var jobs = 0
        /// When the oldest job still waiting was queued (`nil` while the queue is empty).
        var waitingSince: ContinuousClock.Instant?
    }

    private let state = Mutex(State())
    private let maxBatch: Int
    /// Signalled once for each time a blocked thread is to wake (``nextBatchBlocking()``).
    private let wakeup = DispatchSemaphore(value: 0)

    public init(maxBatch: Int) {
        self.maxBatch = maxBatch
    }

    /// Queues `job`; `false` once the queue is finished (shutting down).
    public func enqueue(_ job: Job) -> Bool {
        let (accepted, waiter, thread) = state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?, Bool) in
            guard !state.finished else { return (false, nil, false) }
            if state.queue.isEmpty { state.waitingSince = .now }
            state.queue.append(job)
            defer { (state.waiter, state.threadWaiting) = (nil, false) }
            return (true, state.waiter, state.threadWaiting)
        }
        waiter?.resume()
        if thread { wakeup.signal() }
        return accepted
    }

    /// Stops accepting work; what is queued is still handed out by ``nextBatch()``.
    public func finish() {
        let (waiter, thread) = state.withLock { state -> (CheckedContinuation<Void, Never>?, Bool) in
            state.finished = true
            defer { (state.waiter, state.threadWaiting) = (nil, false) }
            return (state.waiter, state.threadWaiting)
        }
        waiter?.resume()
        if thread { wakeup.signal() }
    }

    /// A batch, `[]` when finished and empty, `nil` when the caller is to wait.
    private func takeBatch() -> [Job]? {
        state.withLock { state in
            if !state.queue.isEmpty {
                let count = min(maxBatch, state.queue.count)
                let batch = Array(state.queue.prefix(count))
                state.queue.removeFirst(count)
                state.waitingSince = state.queue.isEmpty ? nil : .now
                return batch
            }
            return state.finished ? [] : nil
        }
    }

    /// ``nextBatch()`` for a writer on a thread of its own: blocks the calling thread until there is work.
    public func nextBatchBlocking() -> [Job]? {
        while true {
            if let step = takeBatch() { return step.isEmpty ? nil : step }
            let wait = state.withLock { state -> Bool in
                if !state.queue.isEmpty || state.finished { return false }
                state.threadWaiting = true
                return true
            }
            if wait { wakeup.wait() }
        }
    }

    /// The next batch (at most `maxBatch` jobs), waiting for one; `nil` once finished and empty.
    public func nextBatch() async -> [Job]? {
        while true {
            let step = takeBatch()
            switch step {
            case .some(let jobs): return jobs.isEmpty ? nil : jobs
            case .none:
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resumeNow = state.withLock { state -> Bool in
                        if !state.queue.isEmpty || state.finished { return true }
                        state.waiter = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            }
        }
    }

    /// Counts a committed batch of `jobs` jobs.
    public func committed(jobs: Int) {
        state.withLock {
            $0.batches += 1
            $0.jobs += jobs
        }
    }

    /// Marks the writer's loop as running (or not).
    public func setRunning(_ running: Bool) { state.withLock { $0.running = running } }

    /// Transactions and jobs committed so far (for statistics and benchmarks).
    public var counters: (batches: Int, jobs: Int) { state.withLock { ($0.batches, $0.jobs) } }

    /// The writer's part of a readiness probe: its loop runs, accepts work, and has left nothing waiting longer than
    /// `stalledAfter`.
    public func readiness(stalledAfter: Duration) -> (ready: Bool, detail: String) {
        let (running, finished, queued, since) = state.withLock { ($0.running, $0.finished, $0.queue.count, $0.waitingSince) }
        if !running || finished { return (false, "the writer is not running") }
        if let since, ContinuousClock.now - since > stalledAfter {
            return (false, "the writer has left \(queued) writes waiting for more than \(stalledAfter)")
        }
        return (true, "writer running, \(queued) writes queued")
    }

    /// How one job of a committed batch ended: its caller is resumed with its result, or failed with its error.
    public enum Outcome: Sendable {
        case committed(@Sendable () -> Void)
        case failed(any Error)
    }

    /// Resumes the callers of a committed batch (`fail` for those whose job was rolled back alone).
    public func delivered(_ jobs: [Job], _ outcomes: [Outcome], fail: (Job, any Error) -> Void) {
        committed(jobs: jobs.count)
        for (job, outcome) in zip(jobs, outcomes) {
            switch outcome {
            case .committed(let resume): resume()
            case .failed(let error): fail(job, error)
            }
        }
    }
}
