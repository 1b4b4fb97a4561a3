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

extension AccountService.Failure: APIErrorConvertible {
    var apiError: APIError {
        switch self {
        case .unauthenticated(let reason): return APIError(.unauthorized, reason, code: "unauthorized")
        case .forbidden(let reason): return APIError(.forbidden, reason, code: "forbidden")
        case .invalidCredentials: return APIError(.unauthorized, "Wrong user name or password", code: "invalid_credentials")
        case .throttled(let seconds):
            var error = APIError(.tooManyRequests, "Too many failed logins; try again in \(seconds) s", code: "rate_limited")
            error.headers = [(.retryAfter, "\(seconds)")]
            return error
        case .busy:
            var error = APIError(.tooManyRequests, "Too many logins at once; try again shortly", code: "rate_limited")
            error.headers = [(.retryAfter, "1")]
            return error
        case .invalid(let reason): return APIError(.unprocessableContent, reason, code: "invalid")
        case .weakPassword(let reason): return APIError(.unprocessableContent, "Password refused: \(reason)", code: "weak_password")
        case .duplicateUser(let name): return APIError(.conflict, "User \(name) exists", code: "conflict")
        case .unknownUser(let name): return APIError(.notFound, "No user \(name)", code: "not_found")
        case .unknownToken: return APIError(.notFound, "No such token", code: "not_found")
        case .lastAdmin: return APIError(.conflict, "The last active admin cannot be removed, disabled or demoted", code: "last_admin")
        case .tooManyTokens(let limit): return APIError(.conflict, "At most \(limit) live tokens per user; revoke one first", code: "too_many_tokens")
        }
    }
}

extension DeviceCredentialService.Failure: APIErrorConvertible {
    var apiError: APIError {
        switch self {
        case .hasKey(let id): APIError(.conflict, "Device \(id) already has its own key (pass \"replace\": true)", code: "conflict")
        case .unknown(let id): APIError(.notFound, "No credentials for device \(id)", code: "not_found")
        }
    }
}
