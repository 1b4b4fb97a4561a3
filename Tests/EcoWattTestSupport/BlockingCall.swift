import Foundation

/// Runs a blocking call (a socket read, waiting for a child process) on a thread of its own and awaits its result.
///
/// Never on Swift's cooperative pool (two blocked pool threads stall every other test on a 2-core machine), and never on
/// Dispatch's global queue: on Linux it has about one thread per core and does not add more for blocked ones, and GRDB's
/// queues run on it too. Eight requests at once to a server in the same process took both threads, and the server's
/// database work waited behind them until the requests' 5 s receive timeout.
public func blockingCall<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.start()
    }
}
