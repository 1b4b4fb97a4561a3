import EcoWattProtocol
import EcoWattStorage
import FirmwareImage
import Hummingbird

/// A service's error as an HTTP answer. The mapping lives with the routes, not in the services;
/// ``JSONErrorMiddleware`` answers with ``apiError``.
public protocol APIErrorConvertible: Error {
    var apiError: APIError { get }
}

extension DeviceService.Failure: APIErrorConvertible {
    public var apiError: APIError {
        switch self {
        case .unknownDevice(let deviceID): APIError(.notFound, "Unknown device \(deviceID)")
        case .notProvisioned(let deviceID):
            APIError(.notFound, "Unknown device \(deviceID) (pass \"create\": true to pre-provision it)", code: "unknown_device")
        case .exists(let deviceID): APIError(.conflict, "Device \(deviceID) exists", code: "exists")
        }
    }
}

extension TelemetryQueries.Failure: APIErrorConvertible {
    public var apiError: APIError {
        switch self {
        case .noData(let deviceID): APIError(.notFound, "No data for device \(deviceID)")
        case .reversedWindow: APIError(.badRequest, "start_time must not be after end_time")
        case .unknownResolution: APIError(.badRequest, "resolution must be raw, minute, hour or auto")
        }
    }
}

extension ConfigService.Failure: APIErrorConvertible {
    public var apiError: APIError {
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
    public var apiError: APIError {
        switch self {
        case .invalidVersion, .image: APIError(.unprocessableContent, description, code: "invalid")
        case .versionExists: APIError(.conflict, "\(description): versions are immutable, use a new one", code: "conflict")
        case .notFound(let version): OTAError.noFirmware(version).apiError
        case .keys(let reason): OTAError.keysUnavailable(reason).apiError
        case .manifest, .io: APIError(.internalServerError, description)
        }
    }
}

extension AccountService.Failure: APIErrorConvertible {
    public var apiError: APIError {
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
        case .storage(let action): return APIError(.serviceUnavailable, "The account store could not \(action); try again", code: "storage")
        }
    }
}

extension DeviceCredentialService.Failure: APIErrorConvertible {
    public var apiError: APIError {
        switch self {
        case .hasKey(let id): APIError(.conflict, "Device \(id) already has its own key (pass \"replace\": true)", code: "conflict")
        case .unknown(let id): APIError(.notFound, "No credentials for device \(id)", code: "not_found")
        }
    }
}

extension IngestError: APIErrorConvertible {
    public var apiError: APIError {
        switch self {
        // 400 for a body that is not an envelope, 401 for one that is not authentic (spec §2.4).
        case .security(let error): APIError(error)
        case .invalidPayload: APIError(.badRequest, reason, code: code)
        // Nothing was acknowledged: the device keeps the packets and retries.
        case .storage: APIError(.serviceUnavailable, reason, code: code)
        case .revoked: APIError(.unauthorized, reason, code: code)
        case .notAdmitted: APIError(.forbidden, reason, code: code)
        }
    }
}

extension OTAError: APIErrorConvertible {
    public var apiError: APIError {
        let status: HTTPResponse.Status =
            switch self {
            case .noFirmware, .notFound: .notFound
            case .chunkOutOfRange, .invalid: .badRequest
            case .noActiveSession, .sessionVersion, .conflict: .conflict
            case .keysUnavailable, .busy: .serviceUnavailable
            // A client's "not now", expected by the thousand during a large rollout: a 4xx is summed up in the log, a
            // 5xx would be one error line each (measured: `scripts/bench-rollout.sh` logged every held initiate as an
            // error).
            case .held: .tooManyRequests
            }
        return APIError(status, reason, code: code)
    }
}

extension BindingError: APIErrorConvertible {
    public var apiError: APIError { APIError(.forbidden, reason, code: code) }
}

extension CommandStoreError: APIErrorConvertible {
    public var apiError: APIError {
        switch self {
        case .notFound(let id): APIError(.notFound, "Unknown command \(id)")
        case .wrongState(let id, let status): APIError(.conflict, "Command \(id) is \(status.rawValue)")
        case .queueFull(let device, let limit): APIError(.tooManyRequests, "Device \(device) already has \(limit) pending commands")
        }
    }
}

extension RolloutService.Failure: APIErrorConvertible {
    public var apiError: APIError {
        switch self {
        case .unknownRollout(let id): APIError(.notFound, "No rollout \(id)", code: "not_found")
        case .unknownVersion(let version): APIError(.notFound, "No firmware \(version) in the catalog", code: "not_found")
        case .noDevices:
            APIError(.unprocessableContent, "The target has no admitted device that does not already run the version", code: "no_devices")
        case .wrongState(let detail): APIError(.conflict, "Not possible now: \(detail)", code: "conflict")
        case .held(let reason):
            APIError(.tooManyRequests, "The rollout holds this download: \(reason); retry at the next OTA check", code: "rollout_held")
        case .busyDevices(let id, let devices):
            APIError(
                .conflict,
                "\(devices.count) devices are in open rollout \(id) (\(devices.prefix(5).joined(separator: ", "))"
                    + "\(devices.count > 5 ? ", …" : "")): pause is not enough, cancel it first",
                code: "devices_in_rollout"
            )
        }
    }
}
