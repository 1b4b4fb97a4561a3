import Hummingbird
import Logging

/// The request metrics and log: method, route template, status, duration, the error code and the `{id}` path
/// parameter (a device id on device routes, escaped). Never bodies or tokens.
///
/// 5xx are logged at `error` (faults of this server or its database) through one ``RateLimitedLog``, client errors
/// (4xx) at `notice` through another, after counting them by route and reason in `ecowatt_client_errors_total`: the
/// first few per interval in full, then one summary line, so neither a flood of bad requests nor a full disk that fails
/// every request floods the log. Other requests are logged at `debug`.
struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics
    let clientErrors: RateLimitedLog
    let serverErrors: RateLimitedLog

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws
        -> Response
    {
        let start = ContinuousClock.now
        var status = HTTPResponse.Status.internalServerError
        var code: String?
        defer {
            let elapsed = ContinuousClock.now - start
            // The route template, never the raw path: ids in paths would make one time series per device.
            let route = context.endpointPath ?? "unmatched"
            let method = request.method.rawValue
            metrics.increment("ecowatt_http_requests_total", [("route", route), ("method", method), ("status", "\(status.code)")])
            metrics.record("ecowatt_http_request_duration_seconds", [("route", route), ("method", method)], duration: elapsed)
            func metadata() -> Logger.Metadata {
                var metadata: Logger.Metadata = [
                    "method": "\(method)", "route": "\(route)", "status": "\(status.code)",
                    "duration_us": "\(elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000)",
                ]
                if let code { metadata["error"] = "\(code)" }
                if let id = context.parameters.get("id") { metadata["id"] = LogText.value(id) }
                return metadata
            }
            if (400..<500).contains(status.code) {
                let reason = code ?? ErrorCode.of(status)
                metrics.increment("ecowatt_client_errors_total", [("route", route), ("reason", reason)])
                clientErrors.log(level: .notice, kind: "\(route) \(reason)", "client error", metadata: metadata())
            } else if status.code >= 500 {
                let reason = code ?? ErrorCode.of(status)
                serverErrors.log(level: .error, kind: "\(route) \(reason)", "request", metadata: metadata(), via: context.logger)
            } else if context.logger.logLevel <= .debug {
                context.logger.debug("request", metadata: metadata())
            }
        }
        let response = try await next(request, context)
        status = response.status
        code = response.headers.firstValue(ErrorCode.header)
        return response
    }
}
