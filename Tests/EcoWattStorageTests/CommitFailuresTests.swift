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

    @Test func theWriterIsNotReadyUntilNoCommitFailedForTheWindow() throws {
        #expect(failures.notReady(now: at(0)) == nil)
        failures.failed("SQLite error 13: database or disk is full", now: at(1))
        failures.committed(now: at(2))
        let reason = try #require(failures.notReady(now: at(5)))
        #expect(reason.contains("writes failing for 4 s (1 group commits)") && reason.contains("database or disk is full"), "\(reason)")
        #expect(failures.notReady(now: at(11)) == nil, "10 s without a failure")
    }

    @Test func aFailureAfterAQuietWindowStartsANewRunEvenWithoutACommitBetween() {
        failures.failed("first", now: at(0))
        #expect(failures.failed("second", now: at(30)) == .started(error: "second"))
        #expect(failures.notReady(now: at(31))?.contains("for 1 s (1 group commits): second") == true)
    }
}
