import EcoWattStorage
import Logging
import Testing

/// A writer's failed commits: one log line when they start, a reminder a minute, one when they end; not ready while
/// they go on.
@Suite struct CommitFailuresTests {
    let start = ContinuousClock.now
    let failures = CommitFailures(
        logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() },
        remindEvery: .seconds(60),
        window: .seconds(10)
    )

    func at(_ seconds: Double) -> ContinuousClock.Instant { start + .seconds(seconds) }

    @Test func aRunOfFailuresIsLoggedWhenItStartsOncePerReminderAndWhenItEnds() {
        #expect(failures.committed(now: at(0)) == nil, "nothing to end")
        #expect(failures.failed("disk full", now: at(1)) == .started(error: "disk full"))
        for second in 2..<61 { #expect(failures.failed("disk full", now: at(Double(second))) == nil, "no line per batch") }
        #expect(failures.failed("disk full", now: at(61)) == .ongoing(batches: 61, seconds: 60, error: "disk full"))
        #expect(failures.failed("disk full", now: at(62)) == nil)
        // A commit that fits between the failures (a nearly full disk) neither ends the run nor logs.
        #expect(failures.committed(now: at(63)) == nil)
        #expect(failures.failed("disk full", now: at(64)) == nil)
        #expect(failures.committed(now: at(73)) == nil, "9 s since the last failure")
        #expect(failures.committed(now: at(74)) == .ended(batches: 63, seconds: 63))
        #expect(failures.committed(now: at(75)) == nil)
    }

    @Test func theWriterIsNotReadyFromTheFifthFailureUntilNoCommitFailedForTheWindow() throws {
        #expect(failures.notReady(now: at(0)) == nil)
        for second in 1...4 { failures.failed("SQLite error 13: database or disk is full", now: at(Double(second))) }
        #expect(failures.notReady(now: at(4)) == nil, "four failures may be a passing conflict: still ready")
        failures.failed("SQLite error 13: database or disk is full", now: at(5))
        failures.committed(now: at(6))
        let reason = try #require(failures.notReady(now: at(7)))
        #expect(reason.contains("writes failing for 6 s (5 group commits)") && reason.contains("database or disk is full"), "\(reason)")
        #expect(failures.notReady(now: at(15)) == nil, "10 s without a failure")
    }

    @Test func aFailureAfterAQuietWindowStartsANewRunEvenWithoutACommitBetween() {
        failures.failed("first", now: at(0))
        #expect(failures.failed("second", now: at(30)) == .started(error: "second"))
        for second in 31...34 { failures.failed("third", now: at(Double(second))) }
        #expect(failures.notReady(now: at(35))?.contains("for 5 s (5 group commits): third") == true)
    }
}
