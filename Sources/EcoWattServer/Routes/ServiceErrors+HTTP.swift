import EcoWattProtocol
import Hummingbird

/// A service's error as an HTTP answer. The mapping lives with the routes, not in the services;
/// ``JSONErrorMiddleware`` answers with ``apiError``.
protocol APIErrorConvertible: Error {
    var apiError: APIError { get }
}

extension DeviceService.Failure: APIErrorConvertible {
    var apiError: APIError {
        switch self {
        case .unknownDevice(let deviceID): APIError(.notFound, "Unknown device \(deviceID)")
        }
    }
}

extension TelemetryQueries.Failure: APIErrorConvertible {
    var apiError: APIError {
        switch self {
        case .noData(let deviceID): APIError(.notFound, "No data for device \(deviceID)")
        case .reversedWindow: APIError(.badRequest, "start_time must not be after end_time")
        case .unknownResolution: APIError(.badRequest, "resolution must be raw, minute, hour or auto")
        }
    }
}

extension ConfigService.Failure: APIErrorConvertible {
    var apiError: APIError {
        switch self {
        case .nothingToAcknowledge: return APIError(.notFound, "No delivered configuration to acknowledge")
        case .invalid(let reason): return APIError(.badRequest, reason)
        case .dataLoss(let reason, let limits):
            var refused = APIError(.unprocessableContent, reason, code: "data_loss")
            refused.details = [("safe_limits", .object(limits))]
            return refused
        }
    }
}
