import ServiceLifecycle

/// The services' periodic loops (flushes, sweeps, checkpoints): runs `body` every `interval`, the first time one
/// interval after start, until graceful shutdown or cancellation. A run in progress when shutdown starts completes.
public func repeatUntilShutdown(every interval: Duration, _ body: @escaping @Sendable () async -> Void) async {
    await repeatUntilShutdown(firstAfter: interval) {
        await body()
        return interval
    }
}

/// A periodic loop whose pace `body` sets: runs it `firstAfter` start (at once by default), then again after each wait
/// it returns, until graceful shutdown or cancellation. A run in progress when shutdown starts completes.
public func repeatUntilShutdown(firstAfter: Duration = .zero, _ body: @escaping @Sendable () async -> Duration) async {
    await cancelWhenGracefulShutdown {
        var wait = firstAfter
        while !Task.isCancelled {
            if wait > .zero { try? await Task.sleep(for: wait) }
            if Task.isCancelled { break }
            wait = await body()
        }
    }
}

extension Error {
    /// What a store or a sleep throws when the server stops (a cancelled task, a writer that took its last batch): a
    /// periodic job's round that ends so has nothing to warn about.
    public var isShutdown: Bool {
        self is CancellationError || (self as? StoreError) == .shuttingDown
    }
}
