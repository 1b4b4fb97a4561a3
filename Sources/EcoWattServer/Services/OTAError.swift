/// Why an OTA request is refused; answered as `{"success":false,"error":…}` with a 4xx (5xx only for server faults;
/// the statuses are the routes': ``APIErrorConvertible``).
public enum OTAError: Error, Sendable, Equatable {
    case noFirmware(String)
    case chunkOutOfRange(index: String, total: Int)
    case noActiveSession(String)
    case sessionVersion(active: String, requested: String)
    case invalid(String)
    case conflict(String)
    case keysUnavailable(String)
    case notFound(String)
    /// As many downloads are in progress as the server allows (``ServerLimits/maxActiveOTASessions``).
    case busy(Int)
    /// The device's rollout does not let its download start now (paused, wave not open, pacing).
    case held(String)

    public var reason: String {
        switch self {
        case .noFirmware(let version): "No firmware of version \(version)"
        case .chunkOutOfRange(let index, let total): "chunk must be an integer in 0...\(total - 1), not '\(index)'"
        case .noActiveSession(let deviceID): "No active OTA session for \(deviceID): POST /ota/initiate/\(deviceID) first"
        case .sessionVersion(let active, let requested):
            "The active OTA session is for version \(active), not \(requested)"
        case .invalid(let reason), .conflict(let reason), .notFound(let reason): reason
        case .keysUnavailable(let reason): "Firmware keys are not loaded: \(reason)"
        case .busy(let limit): "\(limit) OTA downloads are in progress, the server's limit: retry at the next OTA check"
        case .held(let reason): "The rollout holds this download (\(reason)): retry at the next OTA check"
        }
    }

    public var code: String {
        switch self {
        case .noFirmware: "no_firmware"
        case .chunkOutOfRange: "chunk_out_of_range"
        case .noActiveSession: "no_session"
        case .sessionVersion: "session_version"
        case .invalid: "invalid"
        case .conflict: "conflict"
        case .keysUnavailable: "keys_unavailable"
        case .notFound: "not_found"
        case .busy: "busy"
        case .held: "rollout_held"
        }
    }
}
