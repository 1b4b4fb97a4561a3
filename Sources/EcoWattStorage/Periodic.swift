import ServiceLifecycle

/// The services' periodic loops (flushes, sweeps, checkpoints): runs `body` every `interval`, the first time one
/// interval after start, until graceful shutdown or cancellation. A run in progress when shutdown starts completes.
public func repeatUntilShutdown(every interval: Duration, _ body: @escaping @Sendable () async -> Void) async {
    await cancelWhenGracefulShutdown {
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            if Task.isCancelled { break }
            await body()
        }
    }
}
