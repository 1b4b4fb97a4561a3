import EcoWattServer
import EcoWattTestSupport
import Foundation
import Testing

/// The hashing thread's duty cycle (issue 19): after each hash it rests so that hashing takes at most its share of
/// one core.
@Suite struct PasswordHasherTests {
    @Test func theHashingThreadRestsSoThatHashingTakesAtMostItsShareOfACore() {
        #expect(PasswordHasher.rest(after: .milliseconds(250), sharePercent: 50) == .milliseconds(250))
        #expect(PasswordHasher.rest(after: .milliseconds(250), sharePercent: 25) == .milliseconds(750))
        #expect(PasswordHasher.rest(after: .milliseconds(250), sharePercent: 100) == .zero)
        #expect(PasswordHasher(cost: 12, maxQueued: 1, sharePercent: 0).sharePercent == 1, "never a division by zero")
    }

    /// The rest follows the CPU time a hash took, not its wall time: a thread starved of the cores by other work must
    /// not rest as long as it waited.
    @Test func theRestIsMeasuredInTheHashingThreadsCPUTimeNotTheWallClocks() async throws {
        // On a thread of its own, as the hasher's: a sleep and a busy loop must not hold Swift's cooperative pool, and
        // both readings of each pair must come from one thread.
        let (asleep, working) = try await blockingCall {
            let beforeSleep = PasswordHasher.threadCPUTime()
            Thread.sleep(forTimeInterval: 0.3)
            let asleep = PasswordHasher.threadCPUTime() - beforeSleep
            let beforeWork = PasswordHasher.threadCPUTime()
            let clock = ContinuousClock()
            let start = clock.now
            while clock.now - start < .milliseconds(200) {}  // reading the clock, 200 ms long
            return (asleep, PasswordHasher.threadCPUTime() - beforeWork)
        }
        #expect(asleep < .milliseconds(100), "sleeping used \(asleep) of CPU")
        #expect(working > .zero, "working used CPU")
    }

    @Test func aHashStillVerifiesWithARestAfterIt() async throws {
        let hasher = PasswordHasher(cost: 4, maxQueued: 2, sharePercent: 10)
        let hash = try await hasher.hash("correct horse battery")
        #expect(try await hasher.verify("correct horse battery", hash: hash))
        #expect(try await hasher.verify("wrong horse battery", hash: hash) == false)
    }
}
