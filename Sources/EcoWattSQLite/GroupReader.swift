import GRDB
import Synchronization

/// Reads that many requests ask for at once, answered together in one read transaction (a group read, as the
/// ``GroupCommitWriter`` commits their writes together).
///
/// Each `DatabasePool.read` costs a hop to a reader's dispatch queue and back and a transaction, far more than an
/// indexed lookup. Read one by one, a first-seen device's upload cost 0.34–0.45 ms of server CPU against 0.29 ms for
/// a known device, and 100 000 devices uploading for the first time ran at 0.14 of `GET /health` where known devices
/// ran at 0.28 (issue 23, `scripts/bench.sh 10 targets`). Read together: 0.27–0.36 ms, 10–15 % more uploads per second.
/// While a read runs, the requests that arrive are taken by the next (up to `maxBatch` at once).
final class GroupReader<Key: Sendable, Value: Sendable>: Sendable {
    private struct Waiter: Sendable {
        let key: Key
        let continuation: CheckedContinuation<Value, any Error>
    }
    private let pool: DatabasePool
    private let maxBatch: Int
    private let read: @Sendable (Database, Key) throws -> Value
    /// Requests waiting, and batches being read.
    private let state = Mutex<(waiting: [Waiter], running: Int)>(([], 0))
    private let counts = Mutex((batches: 0, reads: 0))

    /// Batches read at once (each on its own reader connection). With one, a request arriving during a batch waited
    /// for it and the next: the p99 of 100 000 first uploads was 44 ms, against 27 ms with a read each; with two, 30 ms
    /// at the same CPU per upload (runs alternated on one machine, `scripts/bench.sh`'s 100 000-device replay).
    static var concurrentBatches: Int { 2 }

    /// Read transactions and values read so far.
    var counters: (batches: Int, reads: Int) { counts.withLock { $0 } }

    init(pool: DatabasePool, maxBatch: Int = 64, read: @escaping @Sendable (Database, Key) throws -> Value) {
        self.pool = pool
        self.maxBatch = maxBatch
        self.read = read
    }

    /// The value for `key`, read with the others asked for meanwhile.
    func value(for key: Key) async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            let start = state.withLock { state in
                state.waiting.append(Waiter(key: key, continuation: continuation))
                guard state.running < Self.concurrentBatches else { return false }
                state.running += 1
                return true
            }
            if start { Task { await self.drain() } }
        }
    }

    /// Reads batches until nobody waits.
    private func drain() async {
        while true {
            let batch = state.withLock { state -> [Waiter] in
                let batch = Array(state.waiting.prefix(maxBatch))
                state.waiting.removeFirst(batch.count)
                if batch.isEmpty { state.running -= 1 }
                return batch
            }
            guard !batch.isEmpty else { return }
            let keys = batch.map(\.key)
            let read = self.read
            let results: [Result<Value, any Error>]
            do {
                results = try await pool.read { db in keys.map { key in Result { try read(db, key) } } }
            } catch {
                results = Array(repeating: .failure(error), count: batch.count)
            }
            counts.withLock { $0 = ($0.batches + 1, $0.reads + batch.count) }
            for (waiter, result) in zip(batch, results) { waiter.continuation.resume(with: result) }
        }
    }
}
