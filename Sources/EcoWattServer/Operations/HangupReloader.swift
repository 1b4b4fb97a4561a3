import Logging
import ServiceLifecycle
import UnixSignals

/// Reloads what can change under a running server (TLS certificates, FOTA keys) when it receives SIGHUP, as daemons
/// do (`systemctl reload ecowatt`).
public struct HangupReloader: Service {
    let logger: Logger
    let actions: [@Sendable () -> Void]

    public init(logger: Logger, actions: [@Sendable () -> Void]) {
        self.logger = logger
        self.actions = actions
    }

    public func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in signals {
                logger.notice("SIGHUP: reloading TLS certificates and FOTA keys")
                for action in actions { action() }
            }
        }
    }
}
