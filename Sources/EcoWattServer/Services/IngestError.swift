import EcoWattProtocol

/// Why an upload was not acknowledged.
public enum IngestError: Error, Sendable, Equatable {
    /// Not authentic or not an envelope (401, or 400 for a body that is not JSON).
    case security(SecurityError)
    /// Authentic, but the inner JSON is malformed or lacks required fields (400).
    case invalidPayload(String)
    /// The upload could not be stored durably; nothing was acknowledged (503, the device retries).
    case storage(String)
    /// The device's credentials were revoked by an operator (401); nothing is stored.
    case revoked
    /// `device_admission = known` and the device is neither provisioned nor accepted (403); nothing is stored, the id
    /// is listed as pending.
    case notAdmitted
}

extension IngestError {
    /// What the device is told (the HTTP status is the routes': ``APIErrorConvertible``).
    public var reason: String {
        switch self {
        case .security(let error): error.reason
        case .invalidPayload(let detail): "Invalid upload payload: \(detail)"
        case .storage(let detail): "Upload not stored, retry later: \(detail)"
        case .revoked: "Device credentials revoked"
        case .notAdmitted: "Device not admitted: an operator must provision or accept it"
        }
    }

    /// A label from a fixed set (metrics, the event log, `X-EcoWatt-Error`).
    public var code: String {
        switch self {
        case .security(let error): error.clientCategory
        case .invalidPayload: "invalid_payload"
        case .storage: "storage"
        case .revoked: "revoked"
        case .notAdmitted: "not_admitted"
        }
    }
}
