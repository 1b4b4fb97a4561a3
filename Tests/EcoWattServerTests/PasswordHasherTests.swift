import EcoWattServer
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

    @Test func aHashStillVerifiesWithARestAfterIt() async throws {
        let hasher = PasswordHasher(cost: 4, maxQueued: 2, sharePercent: 10)
        let hash = try await hasher.hash("correct horse battery")
        #expect(try await hasher.verify("correct horse battery", hash: hash))
        #expect(try await hasher.verify("wrong horse battery", hash: hash) == false)
    }
}
