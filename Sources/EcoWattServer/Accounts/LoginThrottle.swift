import Synchronization

/// Failed logins per (user, client address) and per client address, with exponential back-off (issue 19).
///
/// Keyed by the pair, not the user alone: throttling per user would let anyone lock a user out. A success clears its
/// pair. The tables are bounded (the oldest entries go first), so a flood of names or addresses cannot grow memory.
public final class LoginThrottle: Sendable {
    public struct Policy: Sendable {
        /// Failures of one pair allowed before back-off starts.
        public var freePerPair = 5
        /// Failures from one address (any user) allowed before back-off starts.
        public var freePerAddress = 30
        /// The first back-off; each further failure doubles it, up to ``maximumSeconds``.
        public var baseSeconds = 1.0
        public var maximumSeconds = 900.0
        /// Entries kept per table.
        public var capacity = 10_000
        public init() {}
    }

    struct Entry {
        var failures: Int
        var blockedUntilMs: Int64
        var lastMs: Int64
    }

    private let policy: Policy
    private let tables = Mutex((pairs: [String: Entry](), addresses: [String: Entry]()))

    public init(policy: Policy = Policy()) {
        self.policy = policy
    }

    /// Seconds the caller must wait before trying again, or `nil` when it may try now.
    public func retryAfter(user: String, address: String, nowMs: Int64) -> Int? {
        tables.withLock { tables in
            let until = max(tables.pairs[Self.pair(user, address)]?.blockedUntilMs ?? 0, tables.addresses[address]?.blockedUntilMs ?? 0)
            return until > nowMs ? Int((until - nowMs + 999) / 1000) : nil
        }
    }

    /// Records a failed attempt.
    public func failed(user: String, address: String, nowMs: Int64) {
        let policy = policy
        tables.withLock { tables in
            Self.fail(&tables.pairs, Self.pair(user, address), free: policy.freePerPair, nowMs: nowMs, policy: policy)
            Self.fail(&tables.addresses, address, free: policy.freePerAddress, nowMs: nowMs, policy: policy)
        }
    }

    /// Records a try refused because the hashing queue was full: it counts against the address only (no password was
    /// checked, so the pair learns nothing). An address that keeps the queue full backs off like one that guesses.
    public func refused(address: String, nowMs: Int64) {
        let policy = policy
        tables.withLock { tables in
            Self.fail(&tables.addresses, address, free: policy.freePerAddress, nowMs: nowMs, policy: policy)
        }
    }

    /// A successful login clears its pair (the address's count decays by itself).
    public func succeeded(user: String, address: String) {
        _ = tables.withLock { $0.pairs.removeValue(forKey: Self.pair(user, address)) }
    }

    static func pair(_ user: String, _ address: String) -> String { "\(user)\u{1F}\(address)" }

    private static func fail(_ table: inout [String: Entry], _ key: String, free: Int, nowMs: Int64, policy: Policy) {
        var entry = table[key] ?? Entry(failures: 0, blockedUntilMs: 0, lastMs: nowMs)
        // An entry quiet for the longest back-off starts over.
        if nowMs - entry.lastMs > Int64(policy.maximumSeconds * 1000) { entry.failures = 0 }
        entry.failures += 1
        entry.lastMs = nowMs
        if entry.failures > free {
            let exponent = min(entry.failures - free - 1, 20)
            let seconds = min(policy.baseSeconds * Double(1 << exponent), policy.maximumSeconds)
            entry.blockedUntilMs = nowMs + Int64(seconds * 1000)
        }
        table[key] = entry
        if table.count > policy.capacity { table.removeOldest(keeping: policy.capacity * 9 / 10, age: \.lastMs) }
    }
}
