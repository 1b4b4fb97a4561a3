import Foundation
import HummingbirdBcrypt
import NIOPosix
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// bcrypt on one dedicated thread with a bounded queue (issue 19).
///
/// A cost-12 hash takes about a quarter of a second of one core; on the server's two cores a login flood hashing on
/// the shared executor would stall ingest. Here at most one hash runs at a time, at most `maxQueued` wait, and the
/// rest are refused at once (429). The hashing thread also runs at a low priority (nice 10): measured with
/// `scripts/bench.sh 10 logins`, a flood at normal priority took one of the two cores and ingest fell from 9 326 to
/// 5 346 uploads/s; at a low priority the scheduler gives ingest the cores first. Not nice 19: with both cores busy
/// (a test suite compiling beside the server) a nice-19 hash got ~1.5 % of a core, 16 s per login; nice 10 gets
/// ~10 %, a few seconds at worst.
///
/// Even at nice 10 a guesser that waits for each answer kept the thread hashing all the time (~4 hashes a second, one
/// core) and ingest fell to 72 % beside it. So the thread also rests after each hash for as long as keeps hashing at
/// most `sharePercent` of one core (default 50), in CPU time: a single login is never slower, a flood of them is
/// spread out, and beyond the queue they are refused.
public final class PasswordHasher: Service, Sendable {
    /// bcrypt's cost (log2 of the rounds); 12 or more.
    public let cost: UInt8
    private let pool: NIOThreadPool
    private let maxQueued: Int
    private let queued = Mutex(0)
    /// Most of one core the hashing thread uses over time, in percent.
    public let sharePercent: Int

    public init(cost: UInt8 = 12, maxQueued: Int = 8, sharePercent: Int = 50) {
        self.cost = cost
        self.maxQueued = maxQueued
        self.sharePercent = min(max(sharePercent, 1), 100)
        pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
    }

    public enum Failure: Error, Equatable {
        /// Too many hashes waiting.
        case busy
    }

    /// Whether a hash would be queued now (a login refuses early, before reading the user, when not).
    public var hasCapacity: Bool { queued.withLock { $0 < maxQueued + 1 } }

    public func hash(_ password: String) async throws -> String {
        let cost = cost
        return try await run { Bcrypt.hash(password, cost: cost) }
    }

    /// Checks `password` against `hash`. Without a hash (an unknown user) the password is hashed at the same cost
    /// instead, so that failing takes the same time either way, and `false` is returned.
    public func verify(_ password: String, hash: String?) async throws -> Bool {
        let cost = cost
        return try await run {
            guard let hash else {
                _ = Bcrypt.hash(password, cost: cost)
                return false
            }
            return Bcrypt.verify(password, hash: hash)
        }
    }

    private func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async throws -> T {
        let admitted = queued.withLock { count in
            guard count < maxQueued + 1 else { return false }
            count += 1
            return true
        }
        guard admitted else { throw Failure.busy }
        defer { queued.withLock { $0 -= 1 } }
        let share = sharePercent
        return try await pool.runIfActive {
            Self.lowPriority()
            let started = Self.threadCPUTime()
            let result = work()
            // The rest holds the only hashing thread: the next queued hash waits for it, the caller does not. It is
            // measured in the thread's CPU time, not the wall clock's: at nice 10 beside a busy test run a debug-build
            // hash of 0.8 s of CPU took over 20 s of wall time, and a rest as long again held the next login for it.
            let rest = Self.rest(after: Self.threadCPUTime() - started, sharePercent: share)
            if rest > .zero { Thread.sleep(forTimeInterval: Double(rest.components.seconds) + Double(rest.components.attoseconds) / 1e18) }
            return result
        }
    }

    /// How long the hashing thread rests after a hash that took `elapsed`, so that hashing takes at most
    /// `sharePercent` of its time.
    public static func rest(after elapsed: Duration, sharePercent: Int) -> Duration {
        elapsed * (100 - sharePercent) / sharePercent
    }

    /// The CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`), or zero where it cannot be read.
    public static func threadCPUTime() -> Duration {
        var now = timespec()
        guard clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now) == 0 else { return .zero }
        return .seconds(now.tv_sec) + .nanoseconds(now.tv_nsec)
    }

    /// Nice 10 for the calling thread: on Linux the nice value is per thread, and `who = 0` names the calling thread
    /// (setpriority(2), "BUGS"). A syscall of a microsecond before a quarter-second hash.
    static func lowPriority() {
        #if os(Linux)
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
        #endif
    }

    public func run() async throws {
        try? await gracefulShutdown()
        try await pool.shutdownGracefully()
    }
}

/// What a password must be: at least 12 characters, at most 72 bytes (bcrypt ignores the rest), not containing the
/// user name, not a common password.
public enum PasswordPolicy {
    public static let minimumLength = 12
    public static let maximumBytes = 72

    /// Why `password` is refused for `user`, or `nil`.
    public static func problem(_ password: String, user: String) -> String? {
        if password.count < minimumLength { return "the password must have at least \(minimumLength) characters" }
        if password.utf8.count > maximumBytes { return "the password must have at most \(maximumBytes) bytes" }
        let lowered = password.lowercased()
        if !user.isEmpty, lowered.contains(user.lowercased()) { return "the password must not contain the user name" }
        if Set(lowered).count <= 2 || common.contains(lowered) { return "the password is too common" }
        return nil
    }

    /// Passwords of 12 or more characters that lead the public lists of leaked passwords (SecLists'
    /// `10-million-password-list-top-1000000`, NordPass's yearly "most common passwords"), and the keyboard and digit
    /// runs they are made of. Written for this project from those lists: shorter entries are refused by length anyway.
    static let common: Set<String> = [
        "123456789012", "1234567890123", "12345678901234", "123456789012345", "1234567890qwerty", "qwertyuiop12",
        "qwertyuiopasdf", "qwertyuiopasdfgh", "qwertyuiopasdfghjkl", "asdfghjkl123", "zxcvbnm12345", "1q2w3e4r5t6y",
        "1q2w3e4r5t6y7u", "1qaz2wsx3edc", "1qaz2wsx3edc4rfv", "zaq12wsxcde3", "qazwsxedcrfv", "qwerty123456",
        "qwerty1234567", "password1234", "password12345", "password123456", "passwordpassword", "password1234!",
        "p@ssw0rd1234", "p@ssword1234", "iloveyou1234", "iloveyouiloveyou", "abc123abc123", "abcdefghijkl",
        "abcdefg12345", "abcd1234abcd", "123123123123", "123321123321", "121212121212", "987654321098",
        "098765432109", "0987654321qwerty", "letmein12345", "welcome12345", "welcome123456", "changeme1234",
        "changemechangeme", "administrator", "administrator1", "adminadmin123", "admin1234567", "admin12345678",
        "superman1234", "football1234", "baseball1234", "sunshine1234", "princess1234", "starwars1234",
        "monkey123456", "dragon123456", "master123456", "trustno11234", "whatever1234", "mypassword123",
        "mypassword1234", "secretpassword", "ecowattecowatt", "ecowatt12345", "energymonitor",
    ]
}
