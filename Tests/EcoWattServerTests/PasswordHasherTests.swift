import EcoWattServer
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
    @Test func theRestIsMeasuredInTheHashingThreadsCPUTimeNotTheWallClocks() {
        let beforeSleep = PasswordHasher.threadCPUTime()
        Thread.sleep(forTimeInterval: 0.3)
        let asleep = PasswordHasher.threadCPUTime() - beforeSleep
        #expect(asleep < .milliseconds(100), "sleeping used \(asleep) of CPU")
        let beforeWork = PasswordHasher.threadCPUTime()
        let clock = ContinuousClock()
        let start = clock.now
        var sum: UInt64 = 0
        while clock.now - start < .milliseconds(200) { sum &+= UInt64(truncatingIfNeeded: clock.now.hashValue) }
        #expect(PasswordHasher.threadCPUTime() - beforeWork > .zero, "working used CPU (\(sum))")
    }

    @Test func aHashStillVerifiesWithARestAfterIt() async throws {
        let hasher = PasswordHasher(cost: 4, maxQueued: 2, sharePercent: 10)
        let hash = try await hasher.hash("correct horse battery")
        #expect(try await hasher.verify("correct horse battery", hash: hash))
        #expect(try await hasher.verify("wrong horse battery", hash: hash) == false)
    }
}
