import EcoWattProtocol
import FirmwareImage
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
        case .notProvisioned(let deviceID):
            APIError(.notFound, "Unknown device \(deviceID) (pass \"create\": true to pre-provision it)", code: "unknown_device")
        case .exists(let deviceID): APIError(.conflict, "Device \(deviceID) exists", code: "exists")
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
        case .nothingPending(let deviceID): return APIError(.notFound, "No pending configuration for \(deviceID)")
        case .invalid(let reason): return APIError(.unprocessableContent, reason, code: "invalid")
        case .dataLoss(let reason, let limits):
            var refused = APIError(.unprocessableContent, reason, code: "data_loss")
            refused.details = [("safe_limits", .object(limits))]
            return refused
        }
    }
}

extension FirmwareError: APIErrorConvertible {
    var apiError: APIError {
        switch self {
        case .invalidVersion, .image: APIError(.unprocessableContent, description, code: "invalid")
        case .versionExists: APIError(.conflict, "\(description): versions are immutable, use a new one", code: "conflict")
        case .notFound(let version): OTAError.noFirmware(version).apiError
        case .keys(let reason): OTAError.keysUnavailable(reason).apiError
        case .manifest, .io: APIError(.internalServerError, description)
        }
    }
}

extension ReasonedError {
    /// The same answer as an ``APIError``.
    var apiError: APIError { APIError(status, reason, code: code) }
}
