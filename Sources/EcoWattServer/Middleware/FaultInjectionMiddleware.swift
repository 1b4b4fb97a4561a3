import Hummingbird

/// Applies injected network faults (``FaultInjector``) to device routes: a delay, a 503, or a delay and a 504.
struct FaultInjectionMiddleware<Context: RequestContext>: RouterMiddleware {
    let faults: FaultInjector

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws
        -> Response
    {
        guard let fault = faults.networkFault(path: request.uri.path) else { return try await next(request, context) }
        switch fault.kind {
        case .slow:
            try await Task.sleep(for: .milliseconds(fault.delayMs))
            return try await next(request, context)
        case .disconnect:
            throw APIError(.serviceUnavailable, "Injected network fault \(fault.id): service unavailable")
        case .timeout:
            try await Task.sleep(for: .milliseconds(fault.delayMs))
            throw APIError(.gatewayTimeout, "Injected network fault \(fault.id): gateway timeout")
        }
    }
}
