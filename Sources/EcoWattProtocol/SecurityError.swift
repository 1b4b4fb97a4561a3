/// Why a secured upload envelope was refused (spec §2.4).
///
/// Every case except ``malformedBody`` means "not authentic" and maps to HTTP 401; the nonce state is never touched.
public enum SecurityError: Error, Sendable, Equatable {
    /// The body is not a JSON object at all (HTTP 400).
    case malformedBody(String)
    /// `nonce`, `payload` or `mac` is absent.
    case missingField(String)
    /// A security field has the wrong JSON type or range (e.g. `"nonce":"11001"`).
    case invalidField(String)
    /// `payload` is not standard base64.
    case invalidBase64
    /// The MAC does not match (wrong key, tampered payload, upper-case hex, …).
    case macMismatch
    /// The nonce is not greater than the last accepted one.
    case replay(nonce: UInt32, lastAccepted: UInt32)
    /// The inner JSON names another device than the URL.
    case deviceMismatch(url: String, payload: String)
    /// The nonce is further ahead of the last accepted one than the device can have spent since (nonce poisoning).
    case nonceJump(nonce: UInt32, lastAccepted: UInt32, allowance: UInt64)
    /// `"encrypted":true`: not supported (the firmware never encrypts, and the flag is not covered by the MAC); HTTP 400.
    case encrypted

    /// The category a client is told (`X-EcoWatt-Error`): a replay and a nonce jump look alike from outside.
    public var clientCategory: String {
        switch self {
        case .replay, .nonceJump: "nonce"
        default: category
        }
    }

    /// Short machine-readable category, used in statistics and logs.
    public var category: String {
        switch self {
        case .malformedBody: "malformed"
        case .missingField: "missing_field"
        case .invalidField: "invalid_field"
        case .invalidBase64: "base64"
        case .macMismatch: "mac"
        case .replay: "replay"
        case .deviceMismatch: "device_mismatch"
        case .nonceJump: "nonce_jump"
        case .encrypted: "encrypted"
        }
    }

    /// Human-readable reason sent back in `{"success":false,"error":…}`.
    public var reason: String {
        switch self {
        case .malformedBody(let detail): "Malformed request body: \(detail)"
        case .missingField(let field): "Missing required security field: \(field)"
        case .invalidField(let field): "Invalid security field: \(field)"
        case .invalidBase64: "Payload is not valid base64"
        case .macMismatch: "HMAC verification failed"
        case .replay, .nonceJump:
            // The same answer for a nonce too low and one too far ahead, without the stored nonce: a client must not
            // be able to search for it (with the public fleet key, knowing it would let anyone sign an accepted upload).
            "Nonce refused: not above the device's last accepted nonce, or too far ahead of it"
        case .deviceMismatch(let url, let payload):
            "Payload device_id '\(payload)' does not match URL device id '\(url)'"
        case .encrypted: "Encrypted payloads are not supported"
        }
    }
}
