import Hummingbird
import Logging

/// One structured log line and the request metrics per request: method, route template, status, duration and the
/// `{id}` path parameter (a device id on device routes). Never bodies or tokens. 5xx are logged at `error`, 4xx at
/// `notice`, the rest at `debug` (set `log_level` to `debug` to see every request).
struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws
        -> Response
    {
        let start = ContinuousClock.now
        var status = HTTPResponse.Status.internalServerError
        defer {
            let elapsed = ContinuousClock.now - start
            // The route template, never the raw path: ids in paths would make one time series per device.
            let route = context.endpointPath ?? "unmatched"
            let method = request.method.rawValue
            metrics.increment("ecowatt_http_requests_total", [("route", route), ("method", method), ("status", "\(status.code)")])
            metrics.record("ecowatt_http_request_duration_seconds", [("route", route), ("method", method)], duration: elapsed)
            let level: Logger.Level = status.code >= 500 ? .error : status.code >= 400 ? .notice : .debug
            if context.logger.logLevel <= level {
                var metadata: Logger.Metadata = [
                    "method": "\(method)", "route": "\(route)", "status": "\(status.code)",
                    "duration_us": "\(elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000)",
                ]
                if let id = context.parameters.get("id") { metadata["id"] = "\(id)" }
                context.logger.log(level: level, "request", metadata: metadata)
            }
        }
        let response = try await next(request, context)
        status = response.status
        return response
    }
}
