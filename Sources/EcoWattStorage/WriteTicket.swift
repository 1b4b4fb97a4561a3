import EcoWattProtocol
import Foundation
import Synchronization

/// The outcome of one queued write, available once its group transaction committed (or failed).
public final class WriteTicket<T: Sendable>: Sendable {
    private let state = Mutex<(result: Result<T, any Error>?, waiters: [CheckedContinuation<T, any Error>])>((nil, []))

    package init() {}

    /// A ticket that is already settled (for stores that commit synchronously).
    public static func settled(_ result: Result<T, any Error>) -> WriteTicket<T> {
        let ticket = WriteTicket<T>()
        ticket.complete(result)
        return ticket
    }

    package func complete(_ result: Result<T, any Error>) {
        let waiters = state.withLock { state -> [CheckedContinuation<T, any Error>] in
            state.result = result
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(with: result) }
    }

    /// Waits for the commit; throws the job's or the transaction's error.
    public func value() async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLock { state -> Result<T, any Error>? in
                if let result = state.result { return result }
                state.waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}
